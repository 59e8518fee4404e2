"""Sort the table's other columns into numeric features, categorical features and left-out ones.

Every column left out carries its reason, shown as a comment in the project file, so the user
can disagree and put it back. The rules are deliberately few and plain: a rule a user cannot
predict is worse than a feature they have to remove by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

import pandas as pd

from modelloop.scaffold.leaks import Leak, categorical_leak, numeric_leak
from modelloop.scaffold.timecol import is_datetime_like

#: More than this share of missing values: the column says too little to be a feature.
MOSTLY_MISSING = 0.95
#: Text with more distinct values than both of these is names, free text or another id.
NEAR_UNIQUE_SHARE = 0.5
NEAR_UNIQUE_COUNT = 50
#: HistGradientBoosting takes at most this many categories per feature (its max_bins).
MAX_CATEGORIES = 255


class Exclusion(Enum):
    """Why a column is not a feature."""

    MISSING = "missing"
    CONSTANT = "constant"
    DATETIME = "datetime"
    ROW_NUMBER = "row_number"
    NEAR_UNIQUE = "near_unique"
    TOO_MANY_CATEGORIES = "too_many_categories"
    LEAK = "leak"


@dataclass(frozen=True)
class LeftOut:
    column: str
    reason: Exclusion
    detail: str  # the sentence for the comment


@dataclass(frozen=True)
class Calendar:
    """A feature that follows the calendar: its kind and the range its values stay in."""

    column: str
    kind: str  # "month", "day of week", ...
    low: int
    high: int


@dataclass
class Features:
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    seasonal: list[Calendar] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    row_numbers: list[str] = field(default_factory=list)


def sort_columns(
    frame: pd.DataFrame, columns: list[str], target: pd.Series | None, classification: bool
) -> Features:
    """Type every column in `columns`; `target` (numbers, 0/1 for classes) is for leak checks."""
    out = Features()
    for column in columns:
        values = frame[column]
        reason = _left_out(values)
        if reason is None and target is not None:
            leak = _leak(values, target, classification)
            if leak is not None:
                out.leaks.append(leak)
                reason = LeftOut(column, Exclusion.LEAK, leak.describe())
        if reason is not None:
            out.left_out.append(reason)
            if reason.reason is Exclusion.ROW_NUMBER:
                out.row_numbers.append(column)
            continue
        (out.numeric if is_numeric(values) else out.categorical).append(column)
        calendar = calendar_kind(values)
        if calendar is not None:
            out.seasonal.append(calendar)
    return out


def is_numeric(values: pd.Series) -> bool:
    """Numbers (a bool is a category: true/false has no order worth splitting on)."""
    return pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)


def _left_out(values: pd.Series) -> LeftOut | None:
    """The first rule that leaves the column out, or None to keep it."""
    name = str(values.name)
    n = len(values)
    missing = int(values.isna().sum())
    if missing > MOSTLY_MISSING * n:
        share = "every value is" if missing == n else f"{missing / n:.0%} of values are"
        return LeftOut(name, Exclusion.MISSING, f"{share} missing")
    present = values.dropna()
    distinct = present.nunique()
    if distinct <= 1:
        value = present.iloc[0]
        shown = value.item() if hasattr(value, "item") else value  # np.int64(2013) -> 2013
        return LeftOut(name, Exclusion.CONSTANT, f"holds a single value ({shown!r})")
    if is_datetime_like(values):
        return LeftOut(
            name,
            Exclusion.DATETIME,
            "a second date/time column; derive calendar features from it (month, day of week) "
            "if they help",
        )
    if is_numeric(values):
        return _row_number(values, distinct)
    if distinct > NEAR_UNIQUE_COUNT and distinct > NEAR_UNIQUE_SHARE * len(present):
        return LeftOut(
            name,
            Exclusion.NEAR_UNIQUE,
            f"{distinct:,} distinct values in {len(present):,} rows: names, free text or another "
            "id, not a category",
        )
    if distinct > MAX_CATEGORIES:
        return LeftOut(
            name,
            Exclusion.TOO_MANY_CATEGORIES,
            f"{distinct:,} categories; HistGradientBoosting takes at most {MAX_CATEGORIES}: group "
            "the rare ones, then add it back",
        )
    return None


def _row_number(values: pd.Series, distinct: int) -> LeftOut | None:
    """Whole numbers, all different and without gaps (1, 2, 3, ...): a row number, not a measure."""
    if values.isna().any() or distinct != len(values) or distinct < 20:
        return None
    if not pd.api.types.is_integer_dtype(values.dtype):
        return None
    low, high = int(values.min()), int(values.max())
    if high - low + 1 != distinct:
        return None
    return LeftOut(
        str(values.name),
        Exclusion.ROW_NUMBER,
        f"a row number (every value distinct, {low} to {high}): an id, not a feature; pass "
        f"--id {values.name} to use it as the id",
    )


def _leak(values: pd.Series, target: pd.Series, classification: bool) -> Leak | None:
    if is_numeric(values):
        return numeric_leak(values, target, classification)
    return categorical_leak(values, target, classification)


#: Name words -> (kind, lowest, highest value). The first whose word is in the name wins, so
#: "day of week" is tried before "day".
_CALENDAR: list[tuple[re.Pattern[str], str, int, int]] = [
    (re.compile(r"(day_?of_?week|weekday|wday|dow)"), "day of week", 0, 7),
    (re.compile(r"(day_?of_?year|yday|doy)"), "day of year", 1, 366),
    (re.compile(r"(week_?of_?year|week|isoweek)"), "week of year", 1, 53),
    (re.compile(r"(month|mon|mth)"), "month", 1, 12),
    (re.compile(r"(quarter|qtr)"), "quarter", 1, 4),
    (re.compile(r"(hour|hr)"), "hour", 0, 23),
    (re.compile(r"(season)"), "season", 0, 4),
    (re.compile(r"(day_?of_?month|mday|day)"), "day of month", 1, 31),
    (re.compile(r"(year|yr)"), "year", 1000, 3000),
]


def calendar_kind(values: pd.Series) -> Calendar | None:
    """A column named like a calendar part whose whole values stay in that part's range."""
    words = _words(str(values.name))
    if not is_numeric(values):
        if "season" in words and values.nunique() <= 4:  # spring, summer, ... written as text
            return Calendar(str(values.name), "season", 0, 0)
        return None
    present = values.dropna()
    if present.empty or not (present % 1 == 0).all():
        return None
    low, high = int(present.min()), int(present.max())
    for pattern, kind, lowest, highest in _CALENDAR:
        if any(pattern.fullmatch(word) for word in words) and lowest <= low and high <= highest:
            return Calendar(str(values.name), kind, low, high)
    return None


def _words(name: str) -> list[str]:
    """'DayOfWeek' and 'day_of_week' -> ['day', 'of', 'week', 'dayofweek', 'day_of_week'].

    The joined forms are kept so that 'day_?of_?week' can match the whole name too.
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    parts = [p for p in re.split(r"[^a-z0-9]+", spaced) if p]
    return [*parts, "_".join(parts), "".join(parts)]
