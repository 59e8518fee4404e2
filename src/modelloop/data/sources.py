"""Where training data comes from: a Parquet/CSV path or glob, or a `module:function`.

A source answers one question: the rows whose timestamp lies in (start, end]. The as-of time
decides `end`, so a pipeline never sees rows from its future.
"""

from __future__ import annotations

import glob
import importlib
import re
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from modelloop.config import DataConfig
from modelloop.data.contract import target_values
from modelloop.data.row_id import derive_row_ids
from modelloop.errors import DataError, shown


class DataSource(Protocol):
    """The port every data source implements."""

    def load(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        """Rows with start < timestamp <= end (a None bound is open)."""
        ...

    def latest_timestamp(self) -> datetime | None:
        """The newest timestamp the source holds: the default as-of time."""
        ...


def parse_timestamps(frame: pd.DataFrame, column: str, origin: str) -> pd.DataFrame:
    if column not in frame.columns:
        raise DataError(
            f"{origin}: the timestamp column {column!r} is missing "
            f"(columns: {', '.join(map(str, frame.columns[:20]))})"
        )
    if not pd.api.types.is_datetime64_any_dtype(frame[column]):
        # utc=True: times with different offsets are one instant scale; format="mixed": a CSV
        # may write midnight as a bare date and other times with hours.
        parsed = pd.to_datetime(frame[column], errors="coerce", utc=True, format="mixed")
        bad = parsed.isna() & frame[column].notna()
        if bad.any():
            rows = list(frame.index[bad][:5])
            raise DataError(
                f"{origin}: column {column!r} holds values that are not timestamps "
                f"(rows {rows}, e.g. {shown(frame[column][bad].iloc[0])})"
            )
        frame = frame.assign(**{column: parsed})
    values = frame[column]
    if getattr(values.dt, "tz", None) is not None:
        frame = frame.assign(**{column: values.dt.tz_convert("UTC").dt.tz_localize(None)})
    frame[column] = frame[column].astype("datetime64[ns]")
    return frame


def _window(
    frame: pd.DataFrame, column: str, start: datetime | None, end: datetime | None
) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    if start is not None:
        mask &= frame[column] > pd.Timestamp(start)
    if end is not None:
        mask &= frame[column] <= pd.Timestamp(end)
    return frame.loc[mask].reset_index(drop=True)


class FileSource:
    """Parquet or CSV files (a path or a glob, relative to the project file)."""

    def __init__(self, pattern: str, base_dir: Path, timestamp: str) -> None:
        self.pattern = pattern
        self.base_dir = base_dir
        self.timestamp = timestamp
        self._cache: tuple[tuple[tuple[str, float], ...], pd.DataFrame] | None = None

    def _files(self) -> list[str]:
        full = (
            self.pattern if Path(self.pattern).is_absolute() else str(self.base_dir / self.pattern)
        )
        files = sorted(glob.glob(full, recursive=True))
        if not files:
            raise DataError(f"data.source: no file matches {self.pattern!r} (looked for {full})")
        return files

    def _read_all(self) -> pd.DataFrame:
        files = self._files()
        key = tuple((f, Path(f).stat().st_mtime) for f in files)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        parts = []
        for name in files:
            try:
                if name.lower().endswith((".csv", ".csv.gz")):
                    part = pd.read_csv(name)
                elif name.lower().endswith((".parquet", ".pq")) or Path(name).is_dir():
                    part = pd.read_parquet(name)
                else:
                    raise DataError(
                        f"data.source: {name} is neither Parquet nor CSV "
                        "(expected a .parquet, .pq, .csv or .csv.gz file)"
                    )
            except DataError:
                raise
            except Exception as exc:  # pyarrow and pandas raise many kinds; all mean "unreadable"
                raise DataError(f"data.source: cannot read {name}: {exc}") from None
            parts.append(parse_timestamps(part, self.timestamp, name))
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        frame = frame.sort_values(self.timestamp, kind="stable").reset_index(drop=True)
        self._cache = (key, frame)
        return frame

    def load(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        return _window(self._read_all(), self.timestamp, start, end)

    def latest_timestamp(self) -> datetime | None:
        frame = self._read_all()
        if frame.empty:
            return None
        return pd.Timestamp(frame[self.timestamp].max()).to_pydatetime()


class FunctionSource:
    """A user function `module:function(start, end) -> DataFrame`, imported from the project dir."""

    def __init__(self, spec: str, base_dir: Path, timestamp: str) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.timestamp = timestamp

    def _function(self) -> Callable[..., Any]:
        module_name, _, attr = self.spec.partition(":")
        if str(self.base_dir) not in sys.path:
            sys.path.insert(0, str(self.base_dir))
        try:
            function = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise DataError(f"data.source: cannot import {self.spec!r}: {exc}") from None
        if not callable(function):
            raise DataError(f"data.source: {self.spec!r} is not a function")
        return function  # type: ignore[no-any-return]

    def load(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        frame = self._function()(start, end)
        if not isinstance(frame, pd.DataFrame):
            raise DataError(
                f"data.source: {self.spec} returned {type(frame).__name__}, "
                "expected a pandas DataFrame"
            )
        frame = parse_timestamps(frame.copy(), self.timestamp, self.spec)
        return _window(frame, self.timestamp, start, end)

    def latest_timestamp(self) -> datetime | None:
        frame = self.load(None, None)
        if frame.empty:
            return None
        return pd.Timestamp(frame[self.timestamp].max()).to_pydatetime()


_FUNCTION_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def open_source(spec: str, base_dir: Path, timestamp: str) -> DataSource:
    """A `module:function` spec names a function; anything else is a path or glob."""
    if _FUNCTION_SPEC.match(spec) and not (base_dir / spec).exists():
        return FunctionSource(spec, base_dir, timestamp)
    return FileSource(spec, base_dir, timestamp)


class ProjectSource:
    """A source's rows as every pipeline reads them: the target as the metric reads it (0/1 for
    the project's classes, NaN where the label has not arrived) and, when the project file
    names no id column, the derived `row_id` (see `modelloop.data.row_id`)."""

    def __init__(self, source: DataSource, data: DataConfig, task: str) -> None:
        self.source = source
        self.data = data
        self.task = task

    def load(self, start: datetime | None, end: datetime | None) -> pd.DataFrame:
        return prepare_rows(self.source.load(start, end), self.data, self.task)

    def latest_timestamp(self) -> datetime | None:
        return self.source.latest_timestamp()


def prepare_rows(frame: pd.DataFrame, data: DataConfig, task: str) -> pd.DataFrame:
    """`frame` with the target mapped and the derived id added (see `ProjectSource`).

    A row whose features cannot make an id (a missing column, text in a numeric feature) gets
    none: the data contract then names the real problem.
    """
    out = frame
    if data.target in frame.columns:
        column = frame[data.target]
        mapped = target_values(column, task, data.positive, data.negative)
        if mapped is not column:
            out = out.assign(**{data.target: mapped})
    if data.derived_id and data.id_column not in frame.columns:
        features = data.features
        try:
            ids = derive_row_ids(out, data.timestamp, features.numeric, features.categorical)
        except (KeyError, ValueError):
            return out
        out = out.assign(**{data.id_column: ids})
    return out



def drop_unlabelled(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, int]:
    """(rows with a target, how many had none): a label that has not arrived is normal."""
    if target not in frame.columns:
        return frame, 0
    empty = frame[target].isna()
    count = int(empty.sum())
    return (frame.loc[~empty].reset_index(drop=True), count) if count else (frame, 0)
