"""The log store port: the prediction log and the label log, and what every adapter shares.

Both logs are append-only. `LogStore` is the port; `_LogStoreBase` holds the validation and
result shaping the adapters share, and the request records the write-ahead log keeps.
`MemoryLogStore` keeps the logs in memory for unit tests; the embedded default,
`ParquetLogStore`, is the adapter in `modelloop.store.parquet`. `check_log_store` asserts what
the two share.

Ids are stored as given (ints or strings) and returned as given. Callers that join predictions
to labels compare ids as strings (`frame[id_column].astype(str)`), because one client sends
`42` and another `"42"`; the label log already collapses relabels on that string key.

`query` runs SQL where the logs live (DuckDB over the Parquet files, or over the memory
store's frames; Spark over the same, when given a Spark session): monitoring computes a
window's statistics there and reads back only the aggregates, never the whole window.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import orjson

from modelloop import lazy
from modelloop.errors import DataError
from modelloop.timeutil import to_naive

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy.module("pandas")  # imported when a frame is built: DuckDB queries need none

PREDICTION = "_prediction"
MODEL_VERSION = "_model_version"
REQUEST_ID = "_request_id"
SERVED_AT = "_served_at"
RECEIVED_AT = "_received_at"
LOG_COLUMNS = (PREDICTION, MODEL_VERSION, REQUEST_ID, SERVED_AT)

_EPOCH = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)

T = TypeVar("T")

#: The view of the labels' order among labels received at the same instant (see `LogViews`).
LABEL_SEQ = "_seq"


@dataclass(frozen=True)
class LogViews:
    """The logs as DuckDB views on one connection (or Spark views on one Spark session, with
    `dialect` "spark"), for the length of a `LogStore.query`.

    `predictions` holds the rows with `start < timestamp <= end`, wherever they are (Parquet or
    the write-ahead log), with every logged column. `labels` holds every label row stored:
    the id and target columns, `_received_at`, and `_seq`, which orders the labels received at
    the same instant as they were logged; the newest label of an id is the one with the
    greatest `(_received_at, _seq)`. Ids keep their stored type (compare them as text when the
    two views' id types differ).
    """

    #: duckdb.DuckDBPyConnection, or `modelloop.store.spark_views.SparkConnection` (the same
    #: `execute(sql).fetchall()`): typed loosely so the port imports neither engine.
    connection: Any
    predictions: str = "predictions"
    labels: str = "labels"
    #: The SQL dialect `connection` speaks (`modelloop.stats.dialect`).
    dialect: Literal["duckdb", "spark"] = "duckdb"

    def columns(self, view: str) -> dict[str, str]:
        """The view's columns and their DuckDB types (Spark's named as DuckDB's), in order."""
        if self.dialect == "spark":
            found: dict[str, str] = self.connection.columns(view)
            return found
        rows = self.connection.execute(f"DESCRIBE {view}").fetchall()
        return {str(row[0]): str(row[1]) for row in rows}


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One scoring request's rows as the log keeps them: stored all or nothing."""

    request_id: str
    model_version: int
    served_at: datetime  # naive, UTC, microseconds
    columns: Mapping[str, Sequence[Any]]  # the id column, the timestamp column and every feature
    predictions: Sequence[float]  # one per row


@runtime_checkable
class LogStore(Protocol):
    """The port: where served predictions and late ground-truth labels are kept.

    Time windows are measured on the project's timestamp column (the data's time), with the
    start exclusive and the end inclusive, so consecutive windows never count a row twice.
    Ids come back as they were given; compare them as strings when joining.
    """

    @property
    def model(self) -> str: ...

    @property
    def id_column(self) -> str: ...

    @property
    def timestamp_column(self) -> str: ...

    @property
    def target_column(self) -> str: ...

    def append_predictions(self, frame: pd.DataFrame) -> None: ...

    def append_requests(self, requests: Sequence[LoggedRequest]) -> None:
        """Log a batch of scored requests; every row is durable when it returns.

        A request is stored whole or not at all. A bad request (a DataError naming it) fails
        the whole call before anything is stored.
        """
        ...

    def flush(self) -> None:
        """Move every acknowledged row into the long-term layout now."""
        ...

    def recover(self) -> int:
        """Replay rows a killed writer acknowledged but did not move, exactly once.

        Call it when a server starts; safe at any time. Returns the number of rows replayed.
        """
        ...

    def close(self) -> None:
        """Stop background work, flush, and release files and locks. Idempotent."""
        ...

    def read_predictions(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame: ...

    def latest_prediction_time(self) -> datetime | None: ...

    def append_labels(self, frame: pd.DataFrame) -> int: ...

    def read_labels(self) -> pd.DataFrame: ...

    def query(
        self,
        start: datetime | None,
        end: datetime | None,
        body: Callable[[LogViews], T],
        *,
        spark: Any = None,
    ) -> T:
        """Run `body` on DuckDB views of the logs (`LogViews`) and return what it returns.

        What the views hold stays where it is: aggregate it in SQL and read back the result,
        so a window of any size costs memory for its statistics only. `body` may run more than
        once (a store whose files a compaction replaced mid-read reads again), so it must only
        read; the connection is closed when `query` returns.

        With `spark` (a SparkSession, `modelloop.spark.session`) the views are Spark's over the
        same rows, and `body` gets them in the Spark dialect.
        """
        ...


class _LogStoreBase(ABC):
    """Validation and result shaping shared by the adapters, so they cannot drift apart."""

    def __init__(
        self, model: str, *, id_column: str, timestamp_column: str, target_column: str
    ) -> None:
        self.model = model
        self.id_column = id_column
        self.timestamp_column = timestamp_column
        self.target_column = target_column
        self._clock_lock = threading.Lock()
        self._last_received: datetime | None = None

    def append_predictions(self, frame: pd.DataFrame) -> None:
        """Store every column given; returns only once the rows are durable."""
        prepared = _prepare_predictions(frame, self.id_column, self.timestamp_column)
        if len(prepared):
            self._write_predictions(prepared)

    def append_requests(self, requests: Sequence[LoggedRequest]) -> None:
        """Log each request's rows as one record; returns once every one of them is durable.

        Every request is checked and encoded before anything is written, so a bad one fails
        the whole call and stores nothing: the server learns of it before it answers anyone.
        """
        records = [_normalize(r, self.id_column, self.timestamp_column) for r in requests]
        payloads = [_encode(r) for r in records if r.rows]
        if payloads:
            self._write_requests(payloads)

    def read_predictions(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame:
        """Rows with `start < timestamp <= end`, sorted by timestamp; empty (never an error)."""
        found = self._read_predictions(_bound(start), _bound(end))
        return _shape_predictions(found, self.id_column, self.timestamp_column)

    def latest_prediction_time(self) -> datetime | None:
        """The newest timestamp logged: where a replay or a monitoring run can resume."""
        return self._latest_prediction_time()

    def append_labels(self, frame: pd.DataFrame) -> int:
        """Store ground truth (id and target only) stamped with its arrival; returns rows stored."""
        if len(frame) == 0:
            return 0
        prepared = _prepare_labels(frame, self.id_column, self.target_column)
        received = self._received_now()
        prepared[RECEIVED_AT] = pd.Series(received, index=prepared.index, dtype="datetime64[us]")
        self._write_labels(prepared, received)
        return len(prepared)

    def read_labels(self) -> pd.DataFrame:
        """One row per id (compared as strings): the latest label received wins."""
        found = self._read_labels()
        columns = [self.id_column, self.target_column, RECEIVED_AT]
        if found is None or len(found) == 0:
            return _empty_labels(self.id_column, self.target_column)
        return _latest_labels(found[columns], self.id_column)

    def query(
        self,
        start: datetime | None,
        end: datetime | None,
        body: Callable[[LogViews], T],
        *,
        spark: Any = None,
    ) -> T:
        """Run `body` on DuckDB views (or Spark's, given a Spark session) of the window
        `(start, end]` and of the labels."""
        return self._query(_bound(start), _bound(end), body, spark)

    @abstractmethod
    def flush(self) -> None:
        """Move every acknowledged request into the store's long-term layout now."""

    @abstractmethod
    def recover(self) -> int:
        """Replay what a dead writer left behind, exactly once; returns the rows replayed."""

    @abstractmethod
    def close(self) -> None:
        """Stop background work, flush, and let go of files and locks. Idempotent."""

    def _received_now(self) -> datetime:
        # Strictly increasing per store, so a relabel sent right after a label always wins.
        with self._clock_lock:
            now = _utcnow()
            if self._last_received is not None and now <= self._last_received:
                now = self._last_received + timedelta(microseconds=1)
            self._last_received = now
            return now

    @abstractmethod
    def _write_predictions(self, frame: pd.DataFrame) -> None: ...

    @abstractmethod
    def _write_requests(self, payloads: list[bytes]) -> None: ...

    @abstractmethod
    def _read_predictions(
        self, start: datetime | None, end: datetime | None
    ) -> pd.DataFrame | None: ...

    @abstractmethod
    def _latest_prediction_time(self) -> datetime | None: ...

    @abstractmethod
    def _write_labels(self, frame: pd.DataFrame, received: datetime) -> None: ...

    @abstractmethod
    def _read_labels(self) -> pd.DataFrame | None: ...

    @abstractmethod
    def _query(
        self,
        start: datetime | None,
        end: datetime | None,
        body: Callable[[LogViews], T],
        spark: Any = None,
    ) -> T: ...

    def _empty_views(self) -> tuple[str, str]:
        """SQL for views with the logs' own columns and no rows: what an empty log shows."""
        ident, stamp, target = (
            _quote(self.id_column),
            _quote(self.timestamp_column),
            _quote(self.target_column),
        )
        predictions = (
            f"SELECT NULL::VARCHAR AS {ident}, NULL::TIMESTAMP AS {stamp}, "
            f"NULL::DOUBLE AS {PREDICTION}, NULL::BIGINT AS {MODEL_VERSION}, "
            f"NULL::VARCHAR AS {REQUEST_ID}, NULL::TIMESTAMP AS {SERVED_AT} WHERE false"
        )
        labels = (
            f"SELECT NULL::VARCHAR AS {ident}, NULL::DOUBLE AS {target}, "
            f"NULL::TIMESTAMP AS {RECEIVED_AT}, NULL::BIGINT AS {LABEL_SEQ} WHERE false"
        )
        return predictions, labels

    def _window_filter(self, start: datetime | None, end: datetime | None) -> str:
        """`start < timestamp <= end` in SQL ("true" without bounds)."""
        column = _quote(self.timestamp_column)
        clauses = []
        if start is not None:
            clauses.append(f"{column} > TIMESTAMP '{start.isoformat(sep=' ')}'")
        if end is not None:
            clauses.append(f"{column} <= TIMESTAMP '{end.isoformat(sep=' ')}'")
        return " AND ".join(clauses) or "true"


class MemoryLogStore(_LogStoreBase):
    """The same logs in memory: a real backend for unit tests, nothing touches disk."""

    def __init__(
        self, model: str, *, id_column: str, timestamp_column: str, target_column: str
    ) -> None:
        super().__init__(
            model,
            id_column=id_column,
            timestamp_column=timestamp_column,
            target_column=target_column,
        )
        self._lock = threading.Lock()
        self._predictions: list[pd.DataFrame] = []
        self._labels: list[pd.DataFrame] = []

    def flush(self) -> None:
        """Nothing to move: appended rows are where reads find them."""

    def recover(self) -> int:
        """Nothing survives a process in memory, so nothing is replayed."""
        return 0

    def close(self) -> None:
        """Nothing to stop or release."""

    def _write_predictions(self, frame: pd.DataFrame) -> None:
        with self._lock:
            self._predictions.append(frame.copy())

    def _write_requests(self, payloads: list[bytes]) -> None:
        # Decoded from the bytes the WAL would keep, so both adapters store the same values.
        records = [_decode(p, "a request") for p in payloads]
        table = _records_table(records, self.id_column, self.timestamp_column)
        frame: pd.DataFrame = table.to_pandas()
        with self._lock:
            self._predictions.append(frame)

    def _read_predictions(
        self, start: datetime | None, end: datetime | None
    ) -> pd.DataFrame | None:
        with self._lock:
            frames = list(self._predictions)
        if not frames:
            return None
        frame = pd.concat(frames, ignore_index=True)
        stamps = frame[self.timestamp_column]
        keep = pd.Series(True, index=frame.index)
        if start is not None:
            keep &= stamps > start
        if end is not None:
            keep &= stamps <= end
        return frame.loc[keep]

    def _latest_prediction_time(self) -> datetime | None:
        with self._lock:
            frames = list(self._predictions)
        if not frames:
            return None
        return _to_datetime(max(f[self.timestamp_column].max() for f in frames))

    def _write_labels(self, frame: pd.DataFrame, received: datetime) -> None:
        with self._lock:
            self._labels.append(frame.copy())

    def _read_labels(self) -> pd.DataFrame | None:
        with self._lock:
            frames = list(self._labels)
        return pd.concat(frames, ignore_index=True) if frames else None

    def _query(
        self,
        start: datetime | None,
        end: datetime | None,
        body: Callable[[LogViews], T],
        spark: Any = None,
    ) -> T:
        with self._lock:
            predictions, labels = list(self._predictions), list(self._labels)
        if spark is not None:
            return self._query_spark(spark, predictions, labels, self._window_filter(start, end), body)
        empty_predictions, empty_labels = self._empty_views()
        connection = connect_duckdb()
        try:
            if predictions:
                logged = arrow_table(pd.concat(predictions, ignore_index=True))
                connection.register("_memory_predictions", logged)
                where = self._window_filter(start, end)
                connection.execute(
                    f"CREATE VIEW predictions AS SELECT * FROM _memory_predictions WHERE {where}"
                )
            else:
                connection.execute(f"CREATE VIEW predictions AS {empty_predictions}")
            if labels:
                frame = pd.concat(labels, ignore_index=True)
                frame = frame[[self.id_column, self.target_column, RECEIVED_AT]]
                # Concatenation order is logging order: it breaks ties in _received_at.
                frame = frame.assign(**{LABEL_SEQ: np.arange(len(frame), dtype="int64")})
                connection.register("_memory_labels", arrow_table(frame))
                connection.execute("CREATE VIEW labels AS SELECT * FROM _memory_labels")
            else:
                connection.execute(f"CREATE VIEW labels AS {empty_labels}")
            return body(LogViews(connection))
        finally:
            connection.close()

    def _query_spark(
        self,
        spark: Any,
        predictions: list[pd.DataFrame],
        labels: list[pd.DataFrame],
        where: str,
        body: Callable[[LogViews], T],
    ) -> T:
        from modelloop.store.spark_views import SparkSources, spark_views

        logged = arrow_table(pd.concat(predictions, ignore_index=True)) if predictions else None
        labelled = None
        if labels:
            frame = pd.concat(labels, ignore_index=True)
            frame = frame[[self.id_column, self.target_column, RECEIVED_AT]]
            frame = frame.assign(**{LABEL_SEQ: np.arange(len(frame), dtype="int64")})
            labelled = arrow_table(frame)
        sources = SparkSources((), logged, (), labelled, where)
        with spark_views(
            spark, sources, id_column=self.id_column, timestamp_column=self.timestamp_column,
            target_column=self.target_column,
        ) as views:
            return body(views)


#: DuckDB's memory for one query of the logs; past it, joins and aggregations spill to disk, so
#: a window of any size runs in the same memory (DuckDB's default is most of the machine's RAM).
QUERY_MEMORY = "128MB"


def connect_duckdb() -> Any:
    """A private in-memory DuckDB connection for one read of the logs."""
    import tempfile

    import duckdb

    connection = duckdb.connect()
    # No progress bar: DuckDB draws one on stderr for long scans, in the middle of the CLI's output.
    connection.execute("SET enable_progress_bar = false")
    # Parquet footers are read once per connection, not once per query.
    connection.execute("SET enable_object_cache = true")
    connection.execute(f"SET memory_limit = '{QUERY_MEMORY}'")
    # Spilled blocks go to the system's temp folder, never a `.tmp` in the user's working folder.
    spill = str(Path(tempfile.gettempdir()) / "modelloop-duckdb").replace("'", "''")
    connection.execute(f"SET temp_directory = '{spill}'")
    return connection


def arrow_table(frame: pd.DataFrame) -> Any:
    """`frame` as an Arrow table for DuckDB; a column mixing types (ids sent as 42 and "42")
    becomes text, the form ids and categories are compared in."""
    import pyarrow as pa

    arrays = []
    for name in frame.columns:
        values = frame[name]
        try:
            arrays.append(pa.array(values, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([None if _missing(v) else str(v) for v in values], type=pa.string()))
    return pa.Table.from_arrays(arrays, names=[str(name) for name in frame.columns])


def _missing(value: Any) -> bool:
    # NaN and pandas' NaT are the values unequal to themselves.
    return value is None or (isinstance(value, (float, datetime)) and value != value)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# -- validation and shaping, shared by both adapters -------------------------------------------


def _prepare_predictions(
    frame: pd.DataFrame, id_column: str, timestamp_column: str
) -> pd.DataFrame:
    required = [id_column, timestamp_column, *LOG_COLUMNS]
    _require_columns(frame, required, "predictions")
    prepared = frame.reset_index(drop=True).copy()
    if len(prepared) == 0:
        return prepared
    prepared[timestamp_column] = _naive_times(prepared[timestamp_column], timestamp_column)
    why = "a logged prediction needs its id and its time"
    for column in (id_column, timestamp_column):
        _require_values(prepared, column, "predictions", why)
    return prepared


def _prepare_labels(frame: pd.DataFrame, id_column: str, target_column: str) -> pd.DataFrame:
    _require_columns(frame, [id_column, target_column], "labels")
    prepared = frame[[id_column, target_column]].reset_index(drop=True).copy()
    for column in (id_column, target_column):
        _require_values(prepared, column, "labels", "every label needs both an id and a target")
    return prepared


def _require_columns(frame: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        needed = ", ".join(repr(c) for c in required)
        raise DataError(f"{what}: missing column(s) {names}; the {what} log needs {needed}")


def _require_values(frame: pd.DataFrame, column: str, what: str, why: str) -> None:
    nulls = int(frame[column].isna().sum())
    if nulls:
        raise DataError(f"{what}: column {column!r} is empty in {nulls} row(s); {why}")


def _naive_times(values: pd.Series, column: str) -> pd.Series:
    """Timestamps compare naive: aware ones become UTC, strings are parsed or rejected."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        try:
            values = pd.to_datetime(values)
        except (ValueError, TypeError) as exc:
            raise DataError(f"predictions: column {column!r} must hold timestamps: {exc}") from exc
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values


def _shape_predictions(
    found: pd.DataFrame | None, id_column: str, timestamp_column: str
) -> pd.DataFrame:
    empty = _empty_predictions(id_column, timestamp_column)
    if found is None:
        return empty
    frame = found.reset_index(drop=True)
    for column in empty.columns:
        if column not in frame.columns:
            frame[column] = empty[column].reindex(frame.index)
    for column in (timestamp_column, SERVED_AT):
        if not pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = pd.to_datetime(frame[column])
    if len(frame) and frame[MODEL_VERSION].notna().all():
        frame[MODEL_VERSION] = frame[MODEL_VERSION].astype("int64")
    if frame[PREDICTION].dtype != "float64":
        frame[PREDICTION] = frame[PREDICTION].astype("float64")
    # Stable: rows with equal timestamps keep the order they were logged in.
    return frame.sort_values(timestamp_column, kind="stable").reset_index(drop=True)


def _empty_predictions(id_column: str, timestamp_column: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            id_column: pd.Series([], dtype="object"),
            timestamp_column: pd.Series([], dtype="datetime64[us]"),
            PREDICTION: pd.Series([], dtype="float64"),
            MODEL_VERSION: pd.Series([], dtype="int64"),
            REQUEST_ID: pd.Series([], dtype="object"),
            SERVED_AT: pd.Series([], dtype="datetime64[us]"),
        }
    )


def _empty_labels(id_column: str, target_column: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            id_column: pd.Series([], dtype="object"),
            target_column: pd.Series([], dtype="float64"),
            RECEIVED_AT: pd.Series([], dtype="datetime64[us]"),
        }
    )


def _latest_labels(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    ordered = frame.reset_index(drop=True).sort_values(RECEIVED_AT, kind="stable")
    ordered = ordered.reset_index(drop=True)
    relabelled = ordered[id_column].astype(str).duplicated(keep="last")
    latest = ordered.loc[~relabelled.to_numpy()].reset_index(drop=True)
    if not pd.api.types.is_datetime64_any_dtype(latest[RECEIVED_AT]):
        latest[RECEIVED_AT] = pd.to_datetime(latest[RECEIVED_AT])
    return latest


def _bound(value: datetime | None) -> datetime | None:
    return None if value is None else _to_datetime(value)


def _to_datetime(value: Any) -> datetime:
    if type(value) is datetime:  # exactly a datetime (not pandas' Timestamp): no pandas needed
        return to_naive(value)
    stamp = pd.Timestamp(value)
    return to_naive(stamp.to_pydatetime(warn=False))


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# -- requests as WAL records --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    """A request as the WAL keeps it: plain lists, timestamps as microseconds since the epoch."""

    request_id: str
    model_version: int
    served_at: int
    columns: dict[str, list[Any]]
    predictions: list[Any]

    @property
    def rows(self) -> int:
        return len(self.predictions)

    def take(self, rows: Sequence[int]) -> _Record:
        columns = {name: [values[i] for i in rows] for name, values in self.columns.items()}
        predictions = [self.predictions[i] for i in rows]
        return _Record(self.request_id, self.model_version, self.served_at, columns, predictions)


def _normalize(request: LoggedRequest, id_column: str, timestamp_column: str) -> _Record:
    """Check one request and turn it into a record; the DataError names the request and column."""
    request_id = request.request_id
    if not isinstance(request_id, str) or not request_id:
        raise DataError(
            f"a logged request needs a request_id (a non-empty string), got {request_id!r}"
        )
    what = f"logged request {request_id!r}"
    version = request.model_version
    if isinstance(version, bool) or not isinstance(version, int | np.integer):
        raise DataError(f"{what}: model_version must be an int, got {version!r}")
    served_at = _micros(request.served_at)
    if served_at is None:
        raise DataError(f"{what}: served_at must be a datetime, got {request.served_at!r}")
    predictions = _as_list(request.predictions, what, "predictions")
    for row, value in enumerate(predictions):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise DataError(f"{what}: prediction {row} is {value!r}, not a number")
    rows = len(predictions)
    columns: dict[str, list[Any]] = {}
    for name, values in request.columns.items():
        if name in LOG_COLUMNS:
            raise DataError(f"{what}: column {name!r} is the log's own; rename the feature")
        listed = _as_list(values, what, name)
        if len(listed) != rows:
            raise DataError(
                f"{what}: column {name!r} holds {len(listed)} value(s) for {rows} prediction(s)"
            )
        columns[name] = listed
    for name in (id_column, timestamp_column):
        if name not in columns:
            raise DataError(
                f"{what}: missing column {name!r}; a logged prediction needs its id and its time"
            )
    empty = sum(1 for value in columns[id_column] if value is None or value != value)
    if empty:
        raise DataError(
            f"{what}: column {id_column!r} is empty in {empty} row(s); a logged prediction needs its id"
        )
    stamps: list[int] = []
    for row, value in enumerate(columns[timestamp_column]):
        micros = _micros(value)
        if micros is None:
            raise DataError(
                f"{what}: column {timestamp_column!r} row {row} holds {value!r}, not a timestamp"
            )
        stamps.append(micros)
    columns[timestamp_column] = stamps
    return _Record(request_id, int(version), served_at, columns, predictions)


def _as_list(values: Any, what: str, name: str) -> list[Any]:
    if isinstance(values, str | bytes):
        raise DataError(f"{what}: column {name!r} must be a sequence of values, got a string")
    if getattr(getattr(values, "dtype", None), "kind", "") == "M":  # numpy datetime64
        values = np.asarray(values).astype("datetime64[us]")  # its tolist() gives datetimes
    tolist = getattr(values, "tolist", None)  # numpy arrays and pandas series: native values
    try:
        listed = tolist() if callable(tolist) else list(values)
    except TypeError as exc:
        raise DataError(f"{what}: column {name!r} must be a sequence of values: {exc}") from exc
    if not isinstance(listed, list):
        raise DataError(f"{what}: column {name!r} must be a sequence of values, got {values!r}")
    return listed


def _micros(value: Any) -> int | None:
    """Microseconds since the epoch of a naive-UTC (or aware) time; None if it is not one."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value != value:  # pandas' NaT: a datetime unequal to itself
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return int((value - _EPOCH) // _ONE_US)
    if isinstance(value, np.datetime64) and not np.isnat(value):
        return int(value.astype("datetime64[us]").astype("int64"))
    return None


def _encode(record: _Record) -> bytes:
    body = {
        "r": record.request_id,
        "v": record.model_version,
        "s": record.served_at,
        "c": record.columns,
        "p": record.predictions,
    }
    try:
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise DataError(f"logged request {record.request_id!r}: cannot store its values: {exc}") from exc


#: Background work (the flusher, a replay) lets other threads run this often, in records.
_YIELD_EVERY = 256


def yield_gil() -> None:
    """Let other threads take the GIL now.

    The flusher turns thousands of records into Parquet in pure Python; left alone it holds the
    GIL for up to the interpreter's switch interval at a time, and a server's requests wait
    behind it. Yielding every few hundred records keeps their latency flat during a flush.
    """
    time.sleep(0)


def _decode(payload: bytes, source: object) -> _Record:
    try:
        body = orjson.loads(payload)
        return _Record(body["r"], body["v"], body["s"], body["c"], body["p"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"a record in {source} cannot be decoded: {exc}") from exc


def _records_table(records: Sequence[_Record], id_column: str, timestamp_column: str) -> Any:
    """The records as one Arrow table, with the column types `append_predictions` produces.

    The id column is int64 if every id is an int, else string; the timestamp column and
    `_served_at` are timestamp[us]; a feature holding any string is string, otherwise float64.
    """
    import pyarrow as pa

    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.columns))
    arrays: list[Any] = []
    for name in names:
        yield_gil()
        values: list[Any] = []
        for record in records:
            column = record.columns.get(name)
            values.extend(column if column is not None else [None] * record.rows)
        if name == timestamp_column:
            arrays.append(pa.array(values, type=pa.timestamp("us")))
        elif name == id_column:
            arrays.append(_id_array(values))
        else:
            arrays.append(_feature_array(values))
    arrays.append(pa.array([p for r in records for p in r.predictions], type=pa.float64()))
    arrays.append(pa.array([r.model_version for r in records for _ in range(r.rows)], type=pa.int64()))
    arrays.append(pa.array([r.request_id for r in records for _ in range(r.rows)], type=pa.string()))
    served = [r.served_at for r in records for _ in range(r.rows)]
    arrays.append(pa.array(served, type=pa.timestamp("us")))
    return pa.Table.from_arrays(arrays, names=[*names, *LOG_COLUMNS])


def _id_array(values: list[Any]) -> Any:
    import pyarrow as pa

    if all(type(v) is int for v in values):
        try:
            return pa.array(values, type=pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            pass  # past int64: kept as text
    return pa.array([v if isinstance(v, str) else _text(v) for v in values], type=pa.string())


def _feature_array(values: list[Any]) -> Any:
    import pyarrow as pa

    kinds = {type(v) for v in values}
    kinds.discard(type(None))
    if kinds <= {float, int, bool}:
        try:
            return pa.array(values, type=pa.float64())
        except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # past float64: kept as text
    if kinds == {str}:
        return pa.array(values, type=pa.string())
    return pa.array([v if v is None or isinstance(v, str) else _text(v) for v in values], type=pa.string())


def _text(value: Any) -> str:
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)
