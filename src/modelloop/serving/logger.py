"""The prediction logger: a batch's scored requests, written through the log port in one call.

The log store's adapter makes them durable (the embedded one: a write-ahead log, one fsync for
the whole batch) before the call returns, and only then do the answers leave. A request's rows
are one record: all of them reach the log, or none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelloop.serving.validation import ValidRows
from modelloop.store.logs import LoggedRequest, LogStore


@dataclass(frozen=True, slots=True)
class Scored:
    """One request scored by one version, ready to log."""

    request_id: str
    version: int
    rows: ValidRows
    predictions: list[float]


class PredictionLogger:
    def __init__(self, logs: LogStore) -> None:
        self.logs = logs
        self.id_column = logs.id_column
        self.timestamp_column = logs.timestamp_column

    def log(self, scored: Sequence[Scored]) -> None:
        """Make every request's rows durable; raises (acknowledging none) if the log cannot."""
        served_at = datetime.now(UTC).replace(tzinfo=None)
        self.logs.append_requests([self._record(s, served_at) for s in scored])

    def _record(self, scored: Scored, served_at: datetime) -> LoggedRequest:
        rows = scored.rows
        n = rows.n_rows
        columns: dict[str, Any] = dict(rows.features)
        # Rows sent without an id or a time are logged under the request's id and the serving
        # time, so they still join the labels sent for `<request id>-<row>` later.
        columns[self.id_column] = (
            rows.ids if rows.ids is not None else [f"{scored.request_id}-{i}" for i in range(n)]
        )
        columns[self.timestamp_column] = rows.times if rows.times is not None else [served_at] * n
        return LoggedRequest(
            request_id=scored.request_id,
            model_version=scored.version,
            served_at=served_at,
            columns=columns,
            predictions=scored.predictions,
        )
