"""Shadow traffic: the challenger scores live requests off the request path.

With `serving.shadow: true`, every request the champion answered is also handed here; a thread
of its own scores it with the version the registry's `challenger` alias names and logs the
predictions to the shadow log (`shadow/<name>/date=YYYY-MM-DD/`, the prediction log's columns,
the challenger's `_model_version`), never to the champion's log. The answer has left already:
shadow scoring never delays or changes it. When the challenger falls behind (a queue of
`max_queue` requests), requests are skipped and counted rather than held in memory.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from modelloop.serving.holder import ServedModel
from modelloop.serving.logger import PredictionLogger, Scored
from modelloop.serving.validation import ValidRows

logger = logging.getLogger("modelloop.serving")

#: How often the challenger alias is read again (a retrained challenger replaces the last one).
ALIAS_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Request:
    rows: ValidRows
    request_id: str


class ShadowScorer:
    """Scores `challenger`'s version on copies of live requests, on its own thread."""

    def __init__(
        self,
        log: PredictionLogger,
        *,
        challenger: Callable[[], int | None],
        load: Callable[[int], ServedModel],
        frame_of: Callable[[ServedModel, list[ValidRows]], pd.DataFrame],
        max_queue: int = 1000,
    ) -> None:
        self._log = log
        self._challenger = challenger
        self._load = load
        self._frame_of = frame_of
        self._queue: queue.Queue[_Request | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._model: ServedModel | None = None
        self._checked = 0.0
        self.scored = 0
        self.skipped = 0
        self.failed = 0

    @property
    def model(self) -> ServedModel | None:
        """The challenger version being shadowed, once loaded."""
        return self._model

    @property
    def version(self) -> int | None:
        return self._model.version if self._model is not None else None

    def close(self) -> None:
        """Close the shadow log (after `stop`): what it holds moves to Parquet."""
        self._log.logs.close()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="modelloop-shadow", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Score what is queued (up to `timeout`), then stop."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def submit(self, rows: ValidRows, request_id: str) -> None:
        """Hand over a request the champion answered; never blocks."""
        try:
            self._queue.put_nowait(_Request(rows, request_id))
        except queue.Full:
            self.skipped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            model = self._current()
            if model is None:
                self.skipped += 1
                continue
            try:
                predictions = model.predict(self._frame_of(model, [item.rows])).tolist()
                self._log.log([Scored(item.request_id, model.version, item.rows, predictions)])
                self.scored += 1
            except Exception:  # the challenger failing must never touch the champion's traffic
                self.failed += 1
                logger.exception("shadow scoring with version %s failed", model.version)

    def _current(self) -> ServedModel | None:
        """The challenger's model, loaded on this thread when the alias names another version."""
        now = time.monotonic()
        if self._model is not None and now - self._checked < ALIAS_SECONDS:
            return self._model
        self._checked = now
        try:
            version = self._challenger()
        except Exception as exc:
            logger.warning("shadow: cannot read the challenger alias: %s", exc)
            return self._model
        if version is None:
            self._model = None
        elif self._model is None or self._model.version != version:
            try:
                self._model = self._load(version)
            except Exception:
                logger.exception("shadow: version %d failed to load", version)
                self._model = None
        return self._model
