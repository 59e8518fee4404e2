"""The prediction log and the label log: what the model said, and what turned out to be true.

Both logs are append-only. `ParquetLogStore` is the embedded default (one Parquet file per
append and date partition, read with DuckDB); `MemoryLogStore` keeps the same semantics in
memory for unit tests, and `check_log_store` asserts what the two share.

Ids are stored as given (ints or strings) and returned as given. Callers that join predictions
to labels compare ids as strings (`frame[id_column].astype(str)`), because one client sends
`42` and another `"42"`; the label log already collapses relabels on that string key.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from modelloop.errors import DataError
from modelloop.timeutil import to_naive

logger = logging.getLogger(__name__)

PREDICTION = "_prediction"
MODEL_VERSION = "_model_version"
REQUEST_ID = "_request_id"
SERVED_AT = "_served_at"
RECEIVED_AT = "_received_at"
LOG_COLUMNS = (PREDICTION, MODEL_VERSION, REQUEST_ID, SERVED_AT)

_PARTITION = "date="


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

    def read_predictions(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> pd.DataFrame: ...

    def latest_prediction_time(self) -> datetime | None: ...

    def append_labels(self, frame: pd.DataFrame) -> int: ...

    def read_labels(self) -> pd.DataFrame: ...


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
    def _read_predictions(
        self, start: datetime | None, end: datetime | None
    ) -> pd.DataFrame | None: ...

    @abstractmethod
    def _latest_prediction_time(self) -> datetime | None: ...

    @abstractmethod
    def _write_labels(self, frame: pd.DataFrame, received: datetime) -> None: ...

    @abstractmethod
    def _read_labels(self) -> pd.DataFrame | None: ...


class ParquetLogStore(_LogStoreBase):
    """The logs as Parquet under `root`, partitioned by date, queried with DuckDB.

    Predictions go to `root/predictions/<model>/date=YYYY-MM-DD/` by the row's timestamp date,
    labels to `root/labels/<model>/date=YYYY-MM-DD/` by the date they arrived. Each append
    writes new files atomically (temp name, fsync, rename, fsync the directory): a crash leaves
    at most a hidden `.tmp` file that reads ignore, never a truncated `.parquet` that would
    break DuckDB's whole scan, and an acknowledged append survives the process being killed.
    """

    def __init__(
        self,
        root: str | Path,
        model: str,
        *,
        id_column: str,
        timestamp_column: str,
        target_column: str,
    ) -> None:
        super().__init__(
            model,
            id_column=id_column,
            timestamp_column=timestamp_column,
            target_column=target_column,
        )
        self.root = Path(root)
        self.predictions_dir = self.root / "predictions" / model
        self.labels_dir = self.root / "labels" / model

    def prediction_files(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[Path]:
        """The Parquet files a read of `(start, end]` opens: only partitions that can hold rows.

        Public so that another engine (Spark) can read exactly the same files.
        """
        start, end = _bound(start), _bound(end)
        files: list[Path] = []
        for day, directory in _partitions(self.predictions_dir):
            first = datetime(day.year, day.month, day.day)
            if start is not None and first + timedelta(days=1) <= start:
                continue
            if end is not None and first > end:
                continue
            files.extend(_parquet_files(directory))
        return files

    def _write_predictions(self, frame: pd.DataFrame) -> None:
        days = frame[self.timestamp_column].dt.strftime("%Y-%m-%d")
        stamp = _utcnow()
        for day in sorted(days.unique()):
            part = frame.loc[(days == day).to_numpy()]
            _write_parquet(part, self.predictions_dir / f"{_PARTITION}{day}", stamp, "predictions")

    def _read_predictions(
        self, start: datetime | None, end: datetime | None
    ) -> pd.DataFrame | None:
        column = _quote(self.timestamp_column)
        clauses: list[str] = []
        params: list[Any] = []
        if start is not None:
            clauses.append(f"{column} > ?")
            params.append(start)
        if end is not None:
            clauses.append(f"{column} <= ?")
            params.append(end)
        where = " AND ".join(clauses)
        return _scan_parquet(self.prediction_files(start, end), "*", where, params)

    def _latest_prediction_time(self) -> datetime | None:
        # The newest partition holds the newest timestamp: open nothing else.
        for _day, directory in reversed(_partitions(self.predictions_dir)):
            files = _parquet_files(directory)
            if not files:
                continue
            found = _scan_parquet(files, f"max({_quote(self.timestamp_column)}) AS latest", "", [])
            if found is not None and len(found) and not pd.isna(found["latest"].iloc[0]):
                return _to_datetime(found["latest"].iloc[0])
        return None

    def _write_labels(self, frame: pd.DataFrame, received: datetime) -> None:
        directory = self.labels_dir / f"{_PARTITION}{received:%Y-%m-%d}"
        _write_parquet(frame, directory, received, "labels")

    def _read_labels(self) -> pd.DataFrame | None:
        files = [f for _day, d in _partitions(self.labels_dir) for f in _parquet_files(d)]
        return _scan_parquet(files, "*", "", [])


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

    def _write_predictions(self, frame: pd.DataFrame) -> None:
        with self._lock:
            self._predictions.append(frame.copy())

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
    stamp = pd.Timestamp(value)
    return to_naive(stamp.to_pydatetime(warn=False))


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# -- Parquet files ------------------------------------------------------------------------------


def _partitions(base: Path) -> list[tuple[date, Path]]:
    """The `date=YYYY-MM-DD` directories under `base`, oldest first; anything else is ignored."""
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return []
    found: list[tuple[date, Path]] = []
    for entry in entries:
        if not entry.name.startswith(_PARTITION) or not entry.is_dir():
            continue
        try:
            day = date.fromisoformat(entry.name[len(_PARTITION) :])
        except ValueError:
            continue
        found.append((day, Path(entry.path)))
    return sorted(found)


def _parquet_files(directory: Path) -> list[Path]:
    # Names sort by write time (part-<utc stamp>-...), which keeps ties in logging order.
    # Temp files start with "." and end in ".tmp": never read.
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return sorted(
        Path(e.path)
        for e in entries
        if e.name.endswith(".parquet") and not e.name.startswith(".") and e.is_file()
    )


def _scan_parquet(
    files: Sequence[Path], select: str, where: str, params: Sequence[Any]
) -> pd.DataFrame | None:
    """Run one DuckDB query over `files`; a damaged file is skipped with a warning, not fatal."""
    import duckdb

    readable = list(files)
    while readable:
        try:
            return _query_parquet(readable, select, where, params)
        except duckdb.Error as exc:
            damaged = [f for f in readable if not _is_readable_parquet(f)]
            if not damaged:
                folder = readable[0].parent.parent
                raise DataError(f"cannot read the log under {folder}: {exc}") from exc
            for path in damaged:
                logger.warning(
                    "skipping %s: not a readable Parquet file (truncated by a crash or copied in "
                    "half-written); move it out of the log directory",
                    path,
                )
            readable = [f for f in readable if f not in damaged]
    return None


def _query_parquet(
    files: Sequence[Path], select: str, where: str, params: Sequence[Any]
) -> pd.DataFrame:
    import duckdb

    sql = (
        f"SELECT {select} FROM read_parquet(?, union_by_name = true, hive_partitioning = false)"
        + (f" WHERE {where}" if where else "")
    )
    connection = duckdb.connect()
    try:
        # DuckDB preserves insertion order without ORDER BY: files, then rows, as logged.
        frame: pd.DataFrame = connection.execute(sql, [[str(f) for f in files], *params]).df()
        return frame
    finally:
        connection.close()


def _is_readable_parquet(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(path).metadata  # noqa: B018 - reading the footer is the check
    except (OSError, ValueError):
        return False
    return True


def _write_parquet(frame: pd.DataFrame, directory: Path, stamp: datetime, what: str) -> Path:
    """Write `frame` as a new file in `directory`, atomically and durably."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{what}: cannot store these rows as Parquet: {exc}") from exc
    _make_dirs(directory)
    name = f"part-{stamp:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex}.parquet"
    final = directory / name
    temporary = directory / f".{name}.tmp"
    try:
        with open(temporary, "wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return final


def _make_dirs(directory: Path) -> None:
    """Create missing directories and make each new entry durable in its parent."""
    if directory.is_dir():
        return
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory to fsync it
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
