"""Find the table's time column, and read it exactly as `data.source` will.

Windows, the label delay and monitoring are all measured on this column, so it must parse at
training time: the chosen column goes through `parse_timestamps`, the very function the data
source uses. Numbers are never taken for times: the source would read 20130101 or 1356998400 as
nanoseconds after 1970, and a count of passengers is not a date either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from modelloop.data.sources import parse_timestamps
from modelloop.errors import DataError

#: A text column is a time column when at least this share of a sample parses as dates.
PARSE_SHARE = 0.95
_SAMPLE = 1000
#: Names that announce a point in time: a numeric column so named gets a hint in the message.
_TIME_NAME = re.compile(r"(date|time|_at$|^ts$)", re.I)
#: A date written as text shows a year (or a clock time) and a separator, or is YYYYMMDD: "12",
#: "3.5" or an age band "1-2" (which dateutil would happily read as January 2nd) is not one.
_DATE_TEXT = re.compile(r"^\s*\d{8}\s*$|(?=.*(\d{4}|\d:\d\d)).*[-/:.T ]")


@dataclass(frozen=True)
class TimeColumn:
    """The chosen column, its values as naive UTC times, and how it was chosen."""

    name: str
    values: pd.Series  # datetime64[ns], naive UTC, index aligned with the table
    inferred: bool  # False when --time named it


def is_datetime_like(values: pd.Series) -> bool:
    """A datetime column, or text of which >= 95% of a sample parses as dates."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return True
    if not _is_text(values):
        return False
    sample = values.dropna()
    if sample.empty:
        return False
    sample = sample.sample(min(len(sample), _SAMPLE), random_state=0).astype(str)
    if sample.map(lambda v: bool(_DATE_TEXT.match(v))).mean() < PARSE_SHARE:
        return False
    parsed = pd.to_datetime(sample, errors="coerce", utc=True, format="mixed")
    return bool(parsed.notna().mean() >= PARSE_SHARE)


def choose_time_column(frame: pd.DataFrame, time: str | None, origin: str) -> TimeColumn:
    """`--time`, checked; else the first datetime-like column; else an error saying what to do."""
    if time is not None:
        return _read(frame, time, origin, inferred=False)
    for column in frame.columns:
        if is_datetime_like(frame[column]):
            return _read(frame, str(column), origin, inferred=True)
    raise DataError(_no_time_column_message(frame, origin))


def _read(frame: pd.DataFrame, column: str, origin: str, *, inferred: bool) -> TimeColumn:
    values = frame[column]
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        example = values.dropna().iloc[0].item() if values.notna().any() else None
        raise DataError(
            f"{origin}: --time {column}: the column holds numbers (e.g. {example!r}), which "
            "modelloop would read as nanoseconds after 1970; write the times as text such as "
            "2013-01-31 or 2013-01-31T06:00, or store a datetime column in Parquet"
        )
    parsed = parse_timestamps(frame[[column]].copy(), column, f"{origin}: --time {column}")[column]
    missing = int(parsed.isna().sum())
    if missing:
        rows = list(frame.index[parsed.isna()][:5])
        raise DataError(
            f"{origin}: the time column {column!r} is empty in {missing} row(s) (rows {rows}, "
            "counting the first data row as 0); every row needs a time, since windows and the "
            "label delay are measured on it"
        )
    if parsed.nunique() < 2:
        raise DataError(
            f"{origin}: the time column {column!r} holds a single time ({parsed.iloc[0]}); "
            "training and holdout windows need rows at different times"
        )
    return TimeColumn(column, parsed, inferred)


def _no_time_column_message(frame: pd.DataFrame, origin: str) -> str:
    message = (
        f"{origin}: no time column found (no column of dates or times). Pass --time COL to name "
        "it: modelloop needs one because training windows, the label delay and monitoring are "
        "measured on it."
    )
    numeric_dates = [
        str(c) for c in frame.columns
        if _TIME_NAME.search(str(c)) and pd.api.types.is_numeric_dtype(frame[c].dtype)
    ]
    if numeric_dates:
        message += (
            f" Column(s) {', '.join(map(repr, numeric_dates))} look like times but hold numbers: "
            "write them as text dates such as 2013-01-31."
        )
    return message + (
        " If the time is spread over columns (year, month, day), combine them into one column "
        "first, such as 2013-01-31."
    )


def _is_text(values: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype)
