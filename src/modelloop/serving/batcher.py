"""Adaptive micro-batching: requests that arrive together are scored together and logged together.

One worker scores a batch at a time on its own thread: one frame, one model call, one log write
(one fsync), then every answer. A batch costs the model's fixed overhead plus a little per row,
so the fewer batches a load needs, the more it can take. Each request is scored by the version it
was validated for, even if a swap happened in between. A lone client's small request is scored
on the event loop's own thread instead, by the request's own task when nothing is being scored:
nothing else is waiting, and handing it to another thread would cost more than the work (on a
virtual machine, waking an idle core takes about a millisecond). A one-row request is scored
through a frame kept for its version and refilled in place, not a new one.

How long to wait before starting a batch adapts to the traffic. The batcher knows how many
requests are open (received, not yet answered) and remembers the recent peak: the number of
clients that keep it busy. When it is free it takes every request queued, and if fewer than that
peak are there, it waits at most `max_wait_ms` for the rest (clients it just answered send their
next request within a round trip). One client alone never waits: its peak is one. Without this,
a steady load splits into two half-batches taking turns, each waiting for the other to finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from modelloop.serving.holder import ServedModel
from modelloop.serving.logger import PredictionLogger, Scored
from modelloop.serving.validation import ValidRows

logger = logging.getLogger("modelloop.serving")

#: Batches this large get every core for the model call (small ones run on one thread).
BIG_BATCH_ROWS = 4096
#: Requests up to this many rows may be scored on the event loop's thread when nothing else waits.
INLINE_ROWS = 64
#: How long a peak of concurrent requests is remembered (seconds) before it is measured anew.
_PEAK_MEMORY = 1.0
_NAN = float("nan")


class ScoringFailed(Exception):
    """The model could not score a request that passed validation (a bug or a broken model)."""


class LogUnavailable(Exception):
    """The prediction log could not make the rows durable: the request is not acknowledged."""


@dataclass
class _Pending:
    model: ServedModel
    rows: ValidRows
    request_id: str
    future: asyncio.Future[list[float]]


class MicroBatcher:
    def __init__(
        self,
        prediction_logger: PredictionLogger,
        *,
        max_batch: int = 256,
        max_wait_ms: float = 2.0,
    ) -> None:
        self.prediction_logger = prediction_logger
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.open = 0  # requests received and not yet answered
        self._peak = 0  # the recent peak of `open`: how many clients are keeping us busy
        self._peak_at = 0.0
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="modelloop-score", initializer=_one_native_thread
        )
        self._worker: asyncio.Task[None] | None = None
        self._busy = False  # a batch is being formed or scored: nothing else may score now
        self._one_row: tuple[ServedModel, _OneRow | None] | None = None

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="modelloop-batcher")

    async def stop(self) -> None:
        """Score and log everything queued, then stop (a clean shutdown loses nothing)."""
        if self._worker is not None:
            await self._queue.put(None)
            await self._worker
            self._worker = None
        self._executor.shutdown(wait=True)

    def opened(self) -> None:
        """A request arrived (call before reading its body); pair with `closed`."""
        self.open += 1
        now = time.monotonic()
        if self.open >= self._peak or now - self._peak_at > _PEAK_MEMORY:
            self._peak, self._peak_at = self.open, now

    def closed(self) -> None:
        self.open -= 1

    async def score(self, model: ServedModel, rows: ValidRows, request_id: str) -> list[float]:
        """Predictions for `rows`, returned once they are durable in the log."""
        if self._worker is None:
            raise RuntimeError("the batcher is not running")
        pending = _Pending(model, rows, request_id, asyncio.get_running_loop().create_future())
        if self._inline([pending]):
            # A lone client, it seems. Let whatever arrived with it open first; if it is still
            # alone and nothing is being scored, score it here: the worker would score it the
            # same way, a turn of the loop later, and wake this task another turn later.
            await asyncio.sleep(0)
            if self._idle() and self._inline([pending]):
                return self._score_here(pending)
        self._queue.put_nowait(pending)
        return await pending.future

    async def _run(self) -> None:
        """Form batches and score them one at a time, each on the scoring thread (or inline when
        a lone client is all there is), logging each before its answers leave."""
        loop = asyncio.get_running_loop()
        _one_native_thread()  # this (the event loop's) thread may score inline
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            self._busy = True
            batch = [first]
            size = first.rows.n_rows
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if len(batch) >= self._expected() or remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                size += item.rows.n_rows
            try:
                await self._score_then_log(loop, batch)
            finally:
                self._busy = False
        # Drain: whatever was queued behind the stop still gets its answer.
        self._busy = True
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                await self._score_then_log(loop, [item])

    async def _score_then_log(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        if self._inline(batch):
            # One client, one small request, nobody else in flight: score and log right here.
            # Handing it to another thread would cost more than the work: on a virtual machine
            # waking an idle core takes about a millisecond, twice per request.
            answers = self._log_batch(self._predict_batch(batch))
        else:
            answers = await loop.run_in_executor(self._executor, self._process, batch)
        for pending, outcome in zip(batch, answers, strict=True):
            if pending.future.done():  # the client went away
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    def _idle(self) -> bool:
        return self._worker is not None and not self._busy and self._queue.empty()

    def _score_here(self, pending: _Pending) -> list[float]:
        self._busy = True
        try:
            outcome = self._process([pending])[0]
        finally:
            self._busy = False
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _inline(self, batch: list[_Pending]) -> bool:
        return (
            len(batch) == 1
            and self.open <= 1
            and self._expected() <= 1
            and batch[0].rows.n_rows <= INLINE_ROWS
        )

    def _expected(self) -> int:
        """How many requests a batch can expect: the recent peak of open requests."""
        if time.monotonic() - self._peak_at > _PEAK_MEMORY:
            self._peak, self._peak_at = self.open, time.monotonic()
        return max(1, self._peak)

    # -- on the scoring thread (or inline, see `_inline`) ----------------------------------------
    def _process(self, batch: list[_Pending]) -> list[list[float] | BaseException]:
        return self._log_batch(self._predict_batch(batch))

    def _predict_batch(self, batch: list[_Pending]) -> list[Scored | BaseException]:
        outcomes: list[Scored | BaseException] = [ScoringFailed("not scored")] * len(batch)
        for model, members in _by_model(batch):
            predictions = self._predict(model, [batch[i] for i in members])
            for i, values in zip(members, predictions, strict=True):
                outcomes[i] = (
                    values
                    if isinstance(values, BaseException)
                    else Scored(batch[i].request_id, model.version, batch[i].rows, values)
                )
        return outcomes

    def _log_batch(self, outcomes: list[Scored | BaseException]) -> list[list[float] | BaseException]:
        scored = [o for o in outcomes if isinstance(o, Scored)]
        if scored:
            try:
                self.prediction_logger.log(scored)
            except Exception as exc:
                logger.exception("the prediction log could not be written")
                failure = LogUnavailable(f"the prediction log could not be written: {exc}")
                return [failure if isinstance(o, Scored) else o for o in outcomes]
        return [o.predictions if isinstance(o, Scored) else o for o in outcomes]

    def _predict(self, model: ServedModel, members: list[_Pending]) -> list[list[float] | BaseException]:
        try:
            values = _score(model, [p.rows for p in members], self._one_row_frame(model))
        except Exception as exc:
            if len(members) == 1:
                logger.exception(
                    "version %s failed to score request %s", model.version, members[0].request_id
                )
                return [ScoringFailed(f"version {model.version} failed to score the rows: {exc}")]
            # One request must not fail its neighbours: score them one by one.
            return [self._predict(model, [p])[0] for p in members]
        out: list[list[float] | BaseException] = []
        start = 0
        for pending in members:
            end = start + pending.rows.n_rows
            out.append(values[start:end].tolist())
            start = end
        return out

    def _one_row_frame(self, model: ServedModel) -> _OneRow | None:
        """`model`'s one-row frame, made when the version first needs it; None if this pandas
        copies the arrays it is given (then every request builds its own frame)."""
        if self._one_row is None or self._one_row[0] is not model:
            one_row = _OneRow(model)
            self._one_row = (model, one_row if one_row.works() else None)
        return self._one_row[1]


def _one_native_thread() -> None:
    """Cap OpenMP at one thread for this (a scoring) thread, once, at its start.

    A small batch scored on every core spends more on waking and spinning threads than on the
    model, and competes with the event loop for the same cores; a per-call limit would cost
    milliseconds. OpenMP's setting is per thread: training elsewhere in the process keeps them all.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")
    try:
        import sklearn
    except ImportError:  # a model that is not scikit-learn's
        return
    # Also per thread: the rows were validated (finite numbers, or NaN where missing) and the
    # estimator's parameters when it was fitted, so scikit-learn need not check either again.
    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)


def _by_model(batch: list[_Pending]) -> list[tuple[ServedModel, list[int]]]:
    """Group by the version each request was validated for (a swap may fall between)."""
    groups: dict[int, tuple[ServedModel, list[int]]] = {}
    for i, pending in enumerate(batch):
        groups.setdefault(id(pending.model), (pending.model, []))[1].append(i)
    return list(groups.values())


def _score(model: ServedModel, requests: list[ValidRows], one_row: _OneRow | None = None) -> np.ndarray:
    """One frame for the whole batch, one model call."""
    if one_row is not None and len(requests) == 1 and requests[0].n_rows == 1:
        frame = one_row.fill(requests[0])
    else:
        frame = model_frame(model, requests)
    rows = len(frame)
    limit: Any = nullcontext()
    if rows >= BIG_BATCH_ROWS:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(limits=os.cpu_count() or 1, user_api="openmp")
    with limit:
        predictions = model.predict(frame)
    if predictions.shape != (rows,):
        raise ValueError(f"the model returned {predictions.shape[0]} predictions for {rows} rows")
    return predictions


def model_frame(model: ServedModel, requests: list[ValidRows]) -> pd.DataFrame:
    """The requests' rows as one frame in `model`'s input form (numbers, then text columns)."""
    columns: dict[str, Any] = {}
    for name in model.numeric:
        columns[name] = np.array(
            requests[0].features[name] if len(requests) == 1
            else list(chain.from_iterable(r.features[name] for r in requests)),
            dtype=np.float64,
        )
    for name in model.categorical:
        values = (
            requests[0].features[name] if len(requests) == 1
            else chain.from_iterable(r.features[name] for r in requests)
        )
        # Text with NaN where missing, as an object column: the model's normalisation finds
        # nothing left to do, and scikit-learn takes object columns as they are.
        columns[name] = pd.Series([_NAN if v is None else v for v in values], dtype=object)
    return pd.DataFrame(columns, copy=False)


class _OneRow:
    """One version's one-row frame, built once and refilled in place for every one-row request.

    Building a DataFrame costs a quarter of a millisecond, and a fresh frame of one block per
    column costs the pipeline another tenth; this one has two blocks (the numbers, the texts)
    over two arrays the fill writes into. Only one batch is scored at a time (see
    `MicroBatcher`), and a predictor keeps no reference to its input, so one frame serves all.
    """

    def __init__(self, model: ServedModel) -> None:
        self._numeric = list(model.numeric)
        self._categorical = list(model.categorical)
        self._numbers = np.zeros((1, len(self._numeric)), dtype=np.float64)
        self._texts = np.full((1, len(self._categorical)), _NAN, dtype=object)
        self.frame = pd.concat(
            [
                pd.DataFrame(self._numbers, columns=self._numeric, copy=False),
                pd.DataFrame(self._texts, columns=self._categorical, dtype=object, copy=False),
            ],
            axis=1,
        )

    def fill(self, rows: ValidRows) -> pd.DataFrame:
        features = rows.features
        numbers, texts = self._numbers[0], self._texts[0]
        for i, name in enumerate(self._numeric):
            value = features[name][0]
            numbers[i] = _NAN if value is None else value
        for i, name in enumerate(self._categorical):
            value = features[name][0]
            texts[i] = _NAN if value is None else value
        return self.frame

    def works(self) -> bool:
        """Whether the frame sees what `fill` writes (pandas kept views, not copies)."""
        expected: list[Any] = [float(i + 1) for i in range(len(self._numeric))]
        expected += [f"probe-{i}" for i in range(len(self._categorical))]
        names = self._numeric + self._categorical
        features = {name: [value] for name, value in zip(names, expected, strict=True)}
        return bool(self.fill(ValidRows(1, features, None, None)).iloc[0].tolist() == expected)
