"""Durations and as-of times.

Most durations are measured on the data's time (the project's timestamp column) and may count
calendar months; wall-clock settings take fixed units only, because "a month" of server time
has no single length. Both kinds are one `Duration` type, parsed and formatted here only.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass, field
from datetime import MAXYEAR, MINYEAR, UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TypeVar

from modelloop.errors import ModelloopError, UsageError

_T = TypeVar("_T", bound=datetime)

_US = 1_000_000  # microseconds in a second: timedelta's resolution
#: Microseconds in one of each fixed unit, largest first (the order text is written in).
_FIXED_US = {"w": 604_800 * _US, "d": 86_400 * _US, "h": 3_600 * _US, "m": 60 * _US,
             "s": _US, "ms": 1_000}
_MONTHS = {"y": 12, "mo": 1}
_ORDER = ["y", "mo", "w", "d", "h", "m", "s", "ms"]
#: 'ms' and 'mo' before 'm', so minutes never swallow the start of a longer unit.
_TOKEN = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|mo|[ywdhms])\s*")
_EXAMPLES = "such as '7d', '12h', '90m', '2w', '6mo', '1y' or '1y6mo' (units: ms, s, m, h, d, w, mo, y)"

#: Longest accepted duration: no data spans more, and much more soon steps outside the years
#: datetime holds (1 to 9999). A month counts as 1/12 of a Julian year here, for this bound only.
MAX_YEARS = 1000
_MONTH_US = 2_629_800 * _US
_MAX_US = MAX_YEARS * 12 * _MONTH_US


class DurationError(ModelloopError, ValueError):
    """A duration that cannot be read, is too long, or steps outside the representable dates.

    A `ValueError` too, so pydantic reports it under the field that holds the value.
    """


def _shown(value: object) -> str:
    """The value as the user wrote it, cut short so a pasted blob cannot flood the message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _too_long(months: int | Decimal, fixed_us: int | Decimal) -> bool:
    return months * _MONTH_US + fixed_us > _MAX_US


@dataclass(frozen=True, eq=False)
class Duration:
    """A whole number of calendar months plus a fixed span; years are 12 months.

    Months have no fixed length, so they are kept apart and only applied to a time
    (`t - Duration`, `t + Duration`), clamping to the month's end as `pandas.DateOffset` does.
    Durations are not ordered: '1mo' against '30d' depends on the month.
    """

    months: int = 0
    fixed: timedelta = field(default_factory=timedelta)

    def __post_init__(self) -> None:
        if isinstance(self.months, bool) or not isinstance(self.months, int):
            raise DurationError(f"Duration.months must be a whole number, got {self.months!r}")
        if not isinstance(self.fixed, timedelta):
            raise DurationError(f"Duration.fixed must be a timedelta, got {self.fixed!r}")
        if self.months < 0 or self.fixed < timedelta(0):
            raise DurationError(
                f"a duration cannot be negative, got months={self.months}, fixed={self.fixed}"
            )
        if _too_long(self.months, self.fixed // timedelta(microseconds=1)):
            raise DurationError(
                f"a duration is at most {MAX_YEARS} years, got months={self.months}, "
                f"fixed={self.fixed}"
            )

    @property
    def is_calendar(self) -> bool:
        """True when the length depends on where it is applied (it counts months)."""
        return self.months != 0

    def to_timedelta(self) -> timedelta:
        """The fixed length; refused for calendar durations, whose length has no single value."""
        if self.months:
            raise DurationError(
                f"{format_duration(self)!r} counts calendar months, which have no fixed length"
            )
        return self.fixed

    def add_to(self, t: _T) -> _T:
        """`t` moved later by this duration: months first, then the fixed part."""
        return self._shift(t, 1)

    def subtract_from(self, t: _T) -> _T:
        """`t` moved earlier by this duration: months first, then the fixed part."""
        return self._shift(t, -1)

    def _shift(self, t: _T, sign: int) -> _T:
        if t != t:  # pandas' NaT (a datetime too, unequal to itself) stays NaT, as with a timedelta
            return t
        if not isinstance(t, datetime):
            raise TypeError(f"a Duration moves a datetime, got {type(t).__name__}")
        try:
            moved = _add_months(t, sign * self.months) if self.months else t
            return moved + sign * self.fixed
        except (OverflowError, ValueError) as exc:  # datetime's and pandas' out-of-range errors
            verb = "plus" if sign > 0 else "minus"
            raise DurationError(
                f"{t.isoformat()} {verb} {format_duration(self)} is outside the dates that can be "
                "represented; use a shorter duration"
            ) from exc

    def __radd__(self, other: _T) -> _T:
        if not isinstance(other, datetime):
            return NotImplemented
        return self.add_to(other)

    def __add__(self, other: _T) -> _T:
        if not isinstance(other, datetime):
            return NotImplemented
        return self.add_to(other)

    def __rsub__(self, other: _T) -> _T:
        if not isinstance(other, datetime):
            return NotImplemented
        return self.subtract_from(other)

    def __eq__(self, other: object) -> bool:
        # A duration without months is exactly a timedelta, so the two compare (and hash) equal.
        if isinstance(other, Duration):
            return (self.months, self.fixed) == (other.months, other.fixed)
        if isinstance(other, timedelta):
            return self.months == 0 and self.fixed == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.fixed) if self.months == 0 else hash((self.months, self.fixed))

    def __bool__(self) -> bool:
        return bool(self.months or self.fixed)

    def __str__(self) -> str:
        return format_duration(self)

    def __repr__(self) -> str:
        return f"Duration({format_duration(self)!r})"


def _add_months(t: _T, months: int) -> _T:
    index = t.year * 12 + (t.month - 1) + months
    year, month = index // 12, index % 12 + 1
    if not MINYEAR <= year <= MAXYEAR:
        raise ValueError(f"year {year} is out of range")
    day = min(t.day, calendar.monthrange(year, month)[1])
    return t.replace(year=year, month=month, day=day)


def parse_duration(value: str | int | float | timedelta | Duration) -> Duration:
    """Read '500ms', '30s', '90m', '12h', '7d', '2w', '6mo', '1y', '1y6mo' or a number of days.

    `m` is minutes and `mo` months, as in the project file; a compound form lists each unit
    once, largest first.
    """
    if isinstance(value, Duration):
        return value
    if isinstance(value, timedelta):
        return Duration(fixed=value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise DurationError(f"expected a duration {_EXAMPLES}, got {value!r}")
        return _build(value, [(Decimal(value), "d")])
    if not isinstance(value, str):
        raise DurationError(f"expected a duration {_EXAMPLES}, got {_shown(value)}")
    text = value.strip()
    if text.startswith("-"):
        raise DurationError(f"a duration cannot be negative, got {_shown(value)}")
    tokens: list[tuple[Decimal, str]] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            break
        tokens.append((Decimal(match.group(1)), match.group(2)))
        at = match.end()
    if not tokens or at < len(text):
        hint = " ('M' is ambiguous: write 'mo' for months, 'm' for minutes)" if "M" in text else ""
        raise DurationError(f"expected a duration {_EXAMPLES}, got {_shown(value)}{hint}")
    ranks = [_ORDER.index(unit) for _, unit in tokens]
    if ranks != sorted(set(ranks)):
        raise DurationError(
            f"write each unit once, largest first (such as '1y6mo' or '1d12h'), got {_shown(value)}"
        )
    return _build(value, tokens)


def _build(value: object, tokens: list[tuple[Decimal, str]]) -> Duration:
    if any(number < 0 for number, _ in tokens):
        raise DurationError(f"a duration cannot be negative, got {_shown(value)}")
    months = sum((number * _MONTHS[unit] for number, unit in tokens if unit in _MONTHS), Decimal())
    fixed_us = sum((number * _FIXED_US[unit] for number, unit in tokens if unit in _FIXED_US),
                   Decimal())
    # Checked on the exact decimal value, before any timedelta exists to overflow.
    if _too_long(months, fixed_us):
        raise DurationError(f"a duration is at most {MAX_YEARS} years, got {_shown(value)}")
    if months != months.to_integral_value():
        raise DurationError(
            f"months and years must be whole numbers (write '18mo' for a year and a half), "
            f"got {_shown(value)}"
        )
    micro = int(fixed_us.to_integral_value(ROUND_HALF_EVEN))
    return Duration(months=int(months), fixed=timedelta(microseconds=micro))


def parse_wall_duration(value: str | int | float | timedelta | Duration) -> timedelta:
    """Read a wall-clock setting: fixed units only, since a month of server time has no length."""
    duration = parse_duration(value)
    if duration.months:
        raise DurationError(
            f"{_shown(value)} counts calendar months or years, but this setting is wall-clock "
            "(measured on the server's clock) and takes ms, s, m, h, d or w"
        )
    return duration.fixed


def format_duration(value: Duration | timedelta) -> str:
    """The shortest text that parses back to `value` ('45d', '6mo', '1y', '2w', '500ms')."""
    duration = parse_duration(value)
    months = duration.months
    text = ""
    if months:
        text = f"{months // 12}y" if months % 12 == 0 else f"{months}mo"
    micro = duration.fixed // timedelta(microseconds=1)
    if micro or not text:
        text += _format_fixed(micro)
    return text


def _format_fixed(micro: int) -> str:
    if micro == 0:
        return "0s"
    candidates = [f"{micro // size}{unit}" for unit, size in _FIXED_US.items() if micro % size == 0]
    parts, rest = [], micro
    for unit, size in _FIXED_US.items():
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    if rest:  # below a millisecond: a decimal fraction of one, exact to the microsecond
        whole = parts.pop()[:-2] if parts and parts[-1].endswith("ms") else "0"
        parts.append(f"{whole}.{rest:03d}".rstrip("0") + "ms")
    candidates.append("".join(parts))
    return min(candidates, key=len)  # ties keep the larger unit, listed first


def parse_as_of(text: str | None) -> datetime | None:
    """Parse an --as-of value ('2013-06-30', '2013-06-30T12:00'); None means 'latest in the data'."""
    if text is None or text == "":
        return None
    problem = f"--as-of: expected a date or time such as 2013-06-30 or 2013-06-30T12:00, got {text!r}"
    try:
        return to_naive(datetime.fromisoformat(text))
    except ValueError:
        pass  # not ISO 8601: pandas reads more ('June 30, 2013', '2013/06/30')
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        raise UsageError(problem) from None
    if pd.isna(stamp):  # 'NaT', 'nan': pandas reads them as "no time"
        raise UsageError(problem)
    return to_naive(stamp.to_pydatetime())


def to_naive(value: datetime) -> datetime:
    """Timestamps are compared naive: a tz-aware value is converted to UTC and its zone dropped."""
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def parse_time(value: str | datetime) -> datetime:
    """A time stored as ISO text (or already a datetime), naive as `to_naive` makes it."""
    return to_naive(value if isinstance(value, datetime) else datetime.fromisoformat(value))


# -- cron schedules ----------------------------------------------------------------------------

#: The cron shorthands a schedule may use, as the 5 fields they stand for.
CRON_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def cron_fields(text: str) -> str:
    """A schedule as its 5 cron fields (minute hour day month weekday), shorthands expanded."""
    text = " ".join(text.split())
    return CRON_ALIASES.get(text.lower(), text)


def _cron_days(field: str) -> str:
    """Cron's weekday field (0 or 7 is Sunday) as the day names APScheduler reads unambiguously:
    its own numbers start at Monday, so '0' passed through would run on the wrong day."""
    if field == "*":
        return "*"

    def day(token: str) -> int:
        token = token.lower()
        if token[:3] in _DAY_NAMES:
            return _DAY_NAMES.index(token[:3])
        if not token.isdigit() or int(token) > 7:
            raise ValueError(f"weekday {token!r} is not 0-7 or a day name (sun, mon, ...)")
        return int(token) % 7

    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"weekday step {step_text!r} is not a positive whole number")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = day(low), day(high)
            if high.strip() == "7":
                last = 7
            if last < first:
                raise ValueError(f"weekday range {span!r} runs backwards")
        else:
            first = last = day(span)
            if step:
                last = 6
        days.update(d % 7 for d in range(first, last + 1, step or 1))
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def cron_trigger(text: str, timezone: str) -> object:
    """An APScheduler CronTrigger for a 5-field cron (or a shorthand) read in `timezone`, with
    cron's meaning of the weekday field. Raises ValueError naming what is wrong."""
    from apscheduler.triggers.cron import CronTrigger

    fields = cron_fields(text).split(" ")
    if len(fields) != 5:
        raise ValueError(
            f"{text!r} is not a cron schedule: write 5 fields (minute hour day month weekday), "
            f"e.g. '0 6 * * *' for 06:00 every day, or one of {', '.join(CRON_ALIASES)}"
        )
    minute, hour, day, month, weekday = fields
    try:
        days = _cron_days(weekday)
        if day != "*" and weekday != "*":
            # Cron runs when either the day of the month or the weekday matches (APScheduler
            # alone would need both): one trigger for each, fired by whichever comes first.
            from apscheduler.triggers.combining import OrTrigger

            return OrTrigger(
                [
                    CronTrigger(minute=minute, hour=hour, day=day, month=month, timezone=timezone),
                    CronTrigger(
                        minute=minute, hour=hour, month=month, day_of_week=days, timezone=timezone
                    ),
                ]
            )
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=days, timezone=timezone
        )
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid cron schedule: {exc}") from None
