"""Choose the project's durations from the time column's cadence and span.

`modelloop train` runs, by default, at the latest time T in the data. It sees the rows labelled
by then (time <= T - label delay), holds out the newest `evaluation.holdout` of them and fits on
the `training.window` before that. The durations are chosen so that this works on the table as
it is, with no edit: at least `MIN_TRAIN_ROWS` rows to fit (10 times that where the table
allows), a holdout with rows in it, and a monitoring window a few steps of the cadence long.
The counts are taken with `training_windows`, the very function training uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

import numpy as np
import pandas as pd

from modelloop.data import training_windows
from modelloop.data.windows import MIN_TRAIN_ROWS
from modelloop.errors import DataError
from modelloop.timeutil import Duration, format_duration

#: What a training window aims for: ten times the minimum.
TRAIN_AIM = 10 * MIN_TRAIN_ROWS
#: Above this, a longer training window buys time, not accuracy.
TRAIN_MAX = 500_000
#: What a holdout aims for, in rows...
HOLDOUT_AIM = 30
#: ...or, for a short table, in share of its labelled span.
HOLDOUT_SPAN_SHARE = 0.10
#: A holdout never takes more than this share of the labelled rows: training needs them more.
HOLDOUT_MAX_SHARE = 0.25
#: A monitoring window aims for this many rows.
MONITOR_AIM = 30
#: A performance verdict needs at most this many labelled rows (the project file's default).
MIN_LABELLED_CAP = 100

_DAY = timedelta(days=1)


def _d(days: float = 0, hours: float = 0) -> Duration:
    return Duration(fixed=timedelta(days=days, hours=hours))


def _mo(months: int) -> Duration:
    return Duration(months=months)


_YEARS = [_mo(12 * y) for y in (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100, 200, 500)]


class Cadence(Enum):
    """How often the table has rows, read from the median gap between distinct times."""

    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"

    @property
    def step(self) -> Duration:
        """One step of the cadence: also the label delay proposed."""
        return {
            Cadence.HOURLY: _d(hours=1),
            Cadence.DAILY: _d(1),
            Cadence.WEEKLY: _d(7),
            Cadence.MONTHLY: _mo(1),
            Cadence.QUARTERLY: _mo(3),
            Cadence.YEARLY: _mo(12),
        }[self]

    @property
    def ladder(self) -> list[Duration]:
        """The durations a window may take, in the cadence's natural units, shortest first."""
        days = [_d(n) for n in (1, 2, 3, 7, 14, 21, 30, 45, 60, 90, 180)]
        if self is Cadence.HOURLY:
            return [*(_d(hours=h) for h in (1, 2, 3, 6, 12)), *days, *_YEARS]
        if self is Cadence.DAILY:
            return [*days, *_YEARS]
        if self is Cadence.WEEKLY:
            return [*(_d(7 * w) for w in (1, 2, 3, 4, 6, 8, 13, 26)), *_YEARS]
        if self is Cadence.MONTHLY:
            return [*(_mo(m) for m in (1, 2, 3, 6, 9)), *_YEARS]
        if self is Cadence.QUARTERLY:
            return [*(_mo(m) for m in (3, 6, 9)), *_YEARS]
        return _YEARS

    @property
    def min_holdout(self) -> Duration:
        """The shortest holdout worth gating on: a week of hourly or daily rows, and so on."""
        return {
            Cadence.HOURLY: _d(7),
            Cadence.DAILY: _d(14),
            Cadence.WEEKLY: _d(56),
            Cadence.MONTHLY: _mo(6),
            Cadence.QUARTERLY: _mo(12),
            Cadence.YEARLY: _mo(36),
        }[self]

    @property
    def monitor_range(self) -> tuple[Duration, Duration]:
        """The shortest and longest monitoring window: a few steps, never a whole era."""
        return {
            Cadence.HOURLY: (_d(1), _d(7)),
            Cadence.DAILY: (_d(7), _d(30)),
            Cadence.WEEKLY: (_d(28), _d(91)),
            Cadence.MONTHLY: (_mo(3), _mo(12)),
            Cadence.QUARTERLY: (_mo(12), _mo(24)),
            Cadence.YEARLY: (_mo(36), _mo(120)),
        }[self]


def read_cadence(times: np.ndarray) -> tuple[Cadence, timedelta]:
    """The cadence and the median gap between distinct sorted times."""
    distinct = np.unique(times)
    gap = pd.Timedelta(np.median(np.diff(distinct))).to_pytimedelta()
    if gap <= timedelta(hours=2):
        cadence = Cadence.HOURLY
    elif gap <= 2 * _DAY:
        cadence = Cadence.DAILY
    elif gap <= 20 * _DAY:
        cadence = Cadence.WEEKLY
    elif gap <= 45 * _DAY:
        cadence = Cadence.MONTHLY
    elif gap <= 140 * _DAY:
        cadence = Cadence.QUARTERLY
    else:
        cadence = Cadence.YEARLY
    return cadence, gap


@dataclass(frozen=True)
class Windows:
    """The proposed durations and the numbers behind them, counted at the latest time."""

    cadence: Cadence
    median_gap: timedelta
    first: datetime
    last: datetime
    last_labelled: datetime  # the newest row with a target
    rows: int  # labelled rows in the table (a target present)
    label_delay: Duration
    holdout: Duration
    training: Duration
    monitoring: Duration
    cooldown: Duration
    min_labelled_rows: int
    train_rows: int
    holdout_rows: int
    monitor_rows: int
    train_start: datetime
    train_end: datetime
    labelled_until: datetime
    covers_all: bool  # the training window reaches back to the first row

    def to_dict(self) -> dict[str, object]:
        return {
            "cadence": self.cadence.value,
            "median_gap": format_duration(self.median_gap),
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "last_labelled": self.last_labelled.isoformat(),
            "rows": self.rows,
            "label_delay": format_duration(self.label_delay),
            "holdout": format_duration(self.holdout),
            "training_window": format_duration(self.training),
            "monitoring_window": format_duration(self.monitoring),
            "cooldown": format_duration(self.cooldown),
            "min_labelled_rows": self.min_labelled_rows,
            "rows_train": self.train_rows,
            "rows_holdout": self.holdout_rows,
            "rows_monitoring_window": self.monitor_rows,
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "labelled_until": self.labelled_until.isoformat(),
        }


class _Counter:
    """Rows with time in (start, end], by binary search over the sorted times."""

    def __init__(self, times: np.ndarray) -> None:
        self.times = np.sort(times)

    def between(self, start: datetime, end: datetime) -> int:
        lo = np.searchsorted(self.times, np.datetime64(start, "ns"), side="right")
        hi = np.searchsorted(self.times, np.datetime64(end, "ns"), side="right")
        return int(hi - lo)

    def until(self, end: datetime) -> int:
        return int(np.searchsorted(self.times, np.datetime64(end, "ns"), side="right"))


def choose_windows(times: pd.Series, origin: str, labelled: pd.Series | None = None) -> Windows:
    """Durations that make `modelloop train` work at the latest time of `times`.

    `labelled` marks the rows whose target is present (default: all). Training runs at the
    latest time of any row, but learns from labelled rows only; when the newest rows have no
    label yet, the label delay is stretched to reach back to the labelled ones.
    """
    every = times.dropna().to_numpy(dtype="datetime64[ns]")
    mask = np.ones(len(times), dtype=bool) if labelled is None else labelled.to_numpy(dtype=bool)
    values = times[mask & times.notna().to_numpy()].to_numpy(dtype="datetime64[ns]")
    if len(values) == 0:
        raise DataError(f"{origin}: no row has a target; training needs labelled rows")
    cadence, gap = read_cadence(every)
    count = _Counter(values)
    first, last = _py(values.min()), _py(every.max())
    delay = _label_delay(cadence, last, _py(values.max()))
    labelled_until = delay.subtract_from(last)
    labelled_rows = count.until(labelled_until)
    if labelled_rows < MIN_TRAIN_ROWS + 1:
        raise DataError(
            f"{origin}: only {labelled_rows} row(s) have a label by {labelled_until:%Y-%m-%d %H:%M} "
            f"(the latest time, {last:%Y-%m-%d %H:%M}, minus a label delay of "
            f"{format_duration(delay)}); training needs at least {MIN_TRAIN_ROWS + 1}: "
            f"{MIN_TRAIN_ROWS} to fit and one to hold out"
        )
    holdout = _holdout(cadence, count, first, labelled_until, labelled_rows, origin)
    train_end = holdout.subtract_from(labelled_until)
    training = _training(cadence, count, first, train_end)
    monitoring, monitor_rows = _monitoring(cadence, _Counter(every), last)
    final = training_windows(last, label_delay=delay, window=training, holdout=holdout)
    return Windows(
        cadence=cadence,
        median_gap=gap,
        first=first,
        last=last,
        last_labelled=_py(values.max()),
        rows=len(values),
        label_delay=delay,
        holdout=holdout,
        training=training,
        monitoring=monitoring,
        cooldown=holdout,
        min_labelled_rows=max(1, min(MIN_LABELLED_CAP, monitor_rows // 2)),
        train_rows=count.between(final.train_start, final.train_end),
        holdout_rows=count.between(final.train_end, final.holdout_end),
        monitor_rows=monitor_rows,
        train_start=final.train_start,
        train_end=final.train_end,
        labelled_until=final.labelled_until,
        covers_all=final.train_start < first,
    )


def _label_delay(cadence: Cadence, last: datetime, last_labelled: datetime) -> Duration:
    """One step of the cadence, or the shortest duration reaching back to the newest label."""
    for d in cadence.ladder:
        if _at_least(d, cadence.step) and d.subtract_from(last) <= last_labelled:
            return d
    return cadence.ladder[-1]


def _holdout(
    cadence: Cadence, count: _Counter, first: datetime, until: datetime, labelled: int, origin: str
) -> Duration:
    """The shortest duration with 30 rows (or 10% of a short span), leaving training its rows."""
    span = until - first
    cap = max(1, int(HOLDOUT_MAX_SHARE * labelled))

    def rows(d: Duration) -> int:
        return count.between(d.subtract_from(until), until)

    def fits(d: Duration) -> bool:
        return 1 <= rows(d) <= cap and count.until(d.subtract_from(until)) >= MIN_TRAIN_ROWS

    ladder = cadence.ladder
    aimed = next(
        (
            i for i, d in enumerate(ladder)
            if _at_least(d, cadence.min_holdout)
            and (rows(d) >= HOLDOUT_AIM or _length(d) >= HOLDOUT_SPAN_SHARE * span)
        ),
        len(ladder) - 1,
    )
    for d in reversed(ladder[: aimed + 1]):  # the aim, or the longest shorter one that fits
        if fits(d):
            return d
    for d in ladder[aimed + 1 :]:  # rows too sparse near the end: look further back
        if fits(d):
            return d
    raise DataError(
        f"{origin}: no holdout fits: the {labelled} labelled rows are too few or too bunched in "
        f"time to keep {MIN_TRAIN_ROWS} for training and some later ones to evaluate on"
    )


def _training(cadence: Cadence, count: _Counter, first: datetime, end: datetime) -> Duration:
    """The shortest window with TRAIN_AIM rows that spans a year of seasons, else all history.

    A window holding more than TRAIN_MAX rows is shortened, keeping at least TRAIN_AIM rows.
    """
    ladder = cadence.ladder
    year = _mo(12)

    def rows(d: Duration) -> int:
        return count.between(d.subtract_from(end), end)

    def enough(d: Duration) -> bool:
        reaches_first = d.subtract_from(end) < first
        return reaches_first or (rows(d) >= TRAIN_AIM and _at_least(d, year))

    chosen = next((d for d in ladder if enough(d)), ladder[-1])
    if rows(chosen) > TRAIN_MAX:
        shorter = [d for d in ladder if TRAIN_AIM <= rows(d) <= TRAIN_MAX]
        if shorter:
            chosen = shorter[-1]
    return chosen


def _monitoring(cadence: Cadence, count: _Counter, last: datetime) -> tuple[Duration, int]:
    """The shortest window in the cadence's range holding MONITOR_AIM rows at the table's rate."""
    low, high = cadence.monitor_range
    options = [d for d in cadence.ladder if _at_least(d, low) and _at_least(high, d)]
    for d in options:
        rows = count.between(d.subtract_from(last), last)
        if rows >= MONITOR_AIM:
            return d, rows
    d = options[-1]
    return d, count.between(d.subtract_from(last), last)


def _length(d: Duration) -> timedelta:
    """An approximate length, for comparing durations only (a month as 1/12 of 365.25 days)."""
    return d.fixed + timedelta(days=365.25 / 12 * d.months)


def _at_least(d: Duration, other: Duration) -> bool:
    return _length(d) >= _length(other)


def _py(value: np.datetime64) -> datetime:
    return pd.Timestamp(value).to_pydatetime()
