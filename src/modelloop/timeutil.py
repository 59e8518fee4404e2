"""Durations and as-of times. Time is the data's: everything here is measured on the project's
timestamp column, never on the wall clock."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pandas as pd

from modelloop.errors import ModelloopError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse '7d', '12h', '90m', '2w' (or a number of days) into a timedelta."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return timedelta(days=float(text))
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"expected a duration such as '7d', '12h' or '2w', got {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    return timedelta(**{_UNITS[unit]: value})


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_as_of(text: str | None) -> datetime | None:
    """Parse an --as-of value ('2013-06-30', '2013-06-30T12:00'); None means 'latest in the data'."""
    if text is None or text == "":
        return None
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise ModelloopError(
            f"--as-of: expected a date or time such as 2013-06-30 or 2013-06-30T12:00, got {text!r}"
        ) from exc
    return to_naive(stamp.to_pydatetime())


def to_naive(value: datetime) -> datetime:
    """Timestamps are compared naive: a tz-aware value is converted to UTC and its zone dropped."""
    if value.tzinfo is not None:
        return pd.Timestamp(value).tz_convert("UTC").tz_localize(None).to_pydatetime()
    return value
