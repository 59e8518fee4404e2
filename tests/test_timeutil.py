"""Durations: one type for every setting, with calendar months and years measured on the data's
time, fixed units for the wall clock, clear errors for text and sizes that cannot work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from modelloop.errors import ModelloopError
from modelloop.timeutil import (
    Duration,
    DurationError,
    format_duration,
    parse_duration,
    parse_wall_duration,
)


def fixed(**parts: float) -> Duration:
    return Duration(fixed=timedelta(**parts))


@pytest.mark.parametrize(("text", "expected"), [
    ("500ms", fixed(milliseconds=500)),
    ("30s", fixed(seconds=30)),
    ("90m", fixed(minutes=90)),  # m is minutes...
    ("6mo", Duration(months=6)),  # ...and mo is months
    ("12h", fixed(hours=12)),
    ("7d", fixed(days=7)),
    ("2w", fixed(weeks=2)),
    ("1y", Duration(months=12)),
    ("1.5h", fixed(minutes=90)),
    ("1.5y", Duration(months=18)),  # a whole number of months
    (" 7 d ", fixed(days=7)),
    ("0d", Duration()),
])
def test_every_unit_parses(text: str, expected: Duration) -> None:
    parsed = parse_duration(text)
    assert parsed == expected
    assert (parsed.months, parsed.fixed) == (expected.months, expected.fixed)


@pytest.mark.parametrize(("text", "months", "rest"), [
    ("1y6mo", 18, timedelta(0)),
    ("1d12h", 0, timedelta(hours=36)),
    ("1mo15d", 1, timedelta(days=15)),
    ("2y1w", 24, timedelta(weeks=1)),
    ("1h30m15s500ms", 0, timedelta(hours=1, minutes=30, seconds=15, milliseconds=500)),
])
def test_compound_durations_add_their_parts(text: str, months: int, rest: timedelta) -> None:
    assert parse_duration(text) == Duration(months=months, fixed=rest)


@pytest.mark.parametrize(("value", "expected"), [
    (3, fixed(days=3)),
    (1.5, fixed(hours=36)),
    (0, Duration()),
    (timedelta(hours=5), fixed(hours=5)),
])
def test_numbers_are_days_and_timedeltas_are_taken_as_they_are(value: Any,
                                                               expected: Duration) -> None:
    assert parse_duration(value) == expected


def test_a_duration_parses_to_itself() -> None:
    duration = Duration(months=3)
    assert parse_duration(duration) is duration


@pytest.mark.parametrize(("value", "fragments"), [
    ("7x", ["'7x'", "'7d'", "mo"]),
    ("5 days", ["'5 days'"]),
    ("", ["''"]),
    ("d", ["'d'"]),
    ("1e5d", ["'1e5d'"]),
    ("6M", ["'6M'", "'mo' for months"]),
    ("12h1d", ["'12h1d'", "largest first"]),
    ("1d1d", ["'1d1d'", "once"]),
    ("0.5mo", ["'0.5mo'", "whole numbers"]),
    ("-3d", ["'-3d'", "negative"]),
    (-1, ["-1", "negative"]),
    (float("nan"), ["nan"]),
    (True, ["True"]),
    (None, ["None"]),
])
def test_bad_values_are_refused_with_the_value_in_the_message(value: Any,
                                                              fragments: list[str]) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(value)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize("value", ["1000000d", "99999y", "1001y", "12013mo", 10**12,
                                   "9" * 400 + "d"])
def test_too_long_is_a_clear_error_not_an_overflow(value: Any) -> None:
    with pytest.raises(DurationError, match="at most 1000 years") as caught:
        parse_duration(value)
    # Both kinds: pydantic reports a ValueError under its field, the CLI prints a ModelloopError.
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ModelloopError)
    assert str(value)[:30] in str(caught.value)
    assert len(str(caught.value)) < 200  # a pasted blob is cut short


def test_the_longest_duration_is_accepted() -> None:
    assert parse_duration("1000y") == Duration(months=12000)


def test_the_constructor_keeps_the_same_rules() -> None:
    with pytest.raises(DurationError, match="negative"):
        Duration(fixed=timedelta(days=-1))
    with pytest.raises(DurationError, match="whole number"):
        Duration(months=True)
    with pytest.raises(DurationError, match="1000 years"):
        Duration(months=20000)


@pytest.mark.parametrize(("start", "text", "expected"), [
    (datetime(2024, 3, 31), "1mo", datetime(2024, 2, 29)),  # leap year
    (datetime(2023, 3, 31), "1mo", datetime(2023, 2, 28)),
    (datetime(2024, 8, 31), "6mo", datetime(2024, 2, 29)),
    (datetime(2024, 2, 29), "4y", datetime(2020, 2, 29)),
    (datetime(2024, 2, 29), "1y", datetime(2023, 2, 28)),
    (datetime(2024, 1, 15, 8, 30), "1mo", datetime(2023, 12, 15, 8, 30)),  # across the year
    (datetime(2024, 3, 31), "1mo1d", datetime(2024, 2, 28)),  # months first, then days
    (datetime(2024, 3, 10), "7d", datetime(2024, 3, 3)),
])
def test_subtracting_months_clamps_to_the_end_of_the_month(start: datetime, text: str,
                                                           expected: datetime) -> None:
    assert start - parse_duration(text) == expected
    assert parse_duration(text).subtract_from(start) == expected


@pytest.mark.parametrize(("start", "text", "expected"), [
    (datetime(2024, 1, 31), "1mo", datetime(2024, 2, 29)),
    (datetime(2023, 1, 31), "1mo", datetime(2023, 2, 28)),
    (datetime(2024, 2, 29), "1y", datetime(2025, 2, 28)),
    (datetime(2023, 12, 15), "1mo", datetime(2024, 1, 15)),
    (datetime(2024, 1, 31), "1mo1d", datetime(2024, 3, 1)),
])
def test_adding_months_clamps_to_the_end_of_the_month(start: datetime, text: str,
                                                      expected: datetime) -> None:
    duration = parse_duration(text)
    assert start + duration == expected
    assert duration + start == expected
    assert duration.add_to(start) == expected


@pytest.mark.parametrize("months", [1, 2, 6, 11, 12, 13, 18, 48])
def test_month_arithmetic_agrees_with_pandas_date_offset(months: int) -> None:
    duration = Duration(months=months)
    offset = pd.DateOffset(months=months)
    for day in pd.date_range("2023-01-01", "2024-12-31 18:00", freq="1D"):
        assert day - duration == day - offset
        assert day + duration == day + offset


def test_a_datetime_stays_a_datetime_and_a_timestamp_a_timestamp() -> None:
    duration = parse_duration("1mo12h")
    moved = datetime(2024, 3, 31, 12) - duration
    assert type(moved) is datetime and moved == datetime(2024, 2, 29)

    stamp = pd.Timestamp("2024-03-31 12:00:00.000000001")  # nanoseconds survive
    assert type(stamp - duration) is pd.Timestamp
    assert stamp - duration == pd.Timestamp("2024-02-29 00:00:00.000000001")
    assert type(stamp + duration) is pd.Timestamp
    assert stamp + duration == pd.Timestamp("2024-05-01 00:00:00.000000001")
    assert pd.NaT - duration is pd.NaT  # type: ignore[type-var]


def test_a_time_zone_is_kept() -> None:
    aware = datetime(2024, 3, 31, tzinfo=UTC)
    assert aware - parse_duration("1mo") == datetime(2024, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize(("start", "text", "sign"), [
    (datetime(5, 1, 1), "10y", -1),
    (datetime(9999, 12, 1), "1mo", 1),
    (datetime(9999, 12, 31), "2d", 1),  # the fixed part overflows, not the months
    (datetime(1, 1, 1), "1ms", -1),
])
def test_a_result_outside_the_dates_is_a_clear_error(start: datetime, text: str,
                                                     sign: int) -> None:
    duration = parse_duration(text)
    with pytest.raises(DurationError, match="outside the dates") as caught:
        _ = start + duration if sign > 0 else start - duration
    assert text in str(caught.value) and start.isoformat() in str(caught.value)


def test_only_times_can_be_moved() -> None:
    duration = parse_duration("1d")
    with pytest.raises(TypeError):
        _ = timedelta(days=1) + duration  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = duration - datetime(2024, 1, 1)  # type: ignore[operator]


def test_calendar_and_fixed_durations_are_not_ordered() -> None:
    with pytest.raises(TypeError):
        _ = parse_duration("1mo") < parse_duration("30d")  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = parse_duration("1mo") > timedelta(days=30)  # type: ignore[operator]


def test_equality_and_hashing() -> None:
    assert parse_duration("7d") == timedelta(days=7)  # no months: exactly a timedelta
    assert hash(parse_duration("7d")) == hash(timedelta(days=7))
    assert parse_duration("1mo") != timedelta(days=30)
    assert parse_duration("1mo") != parse_duration("30d")
    assert parse_duration("1y") == parse_duration("12mo")
    assert len({parse_duration("1y"), parse_duration("12mo"), parse_duration("6mo")}) == 2
    assert not parse_duration("0d") and parse_duration("1ms")


def test_to_timedelta_refuses_months() -> None:
    assert parse_duration("36h").to_timedelta() == timedelta(hours=36)
    with pytest.raises(DurationError, match="'6mo'"):
        parse_duration("6mo").to_timedelta()


def test_wall_clock_durations_take_fixed_units_only() -> None:
    assert parse_wall_duration("10s") == timedelta(seconds=10)
    assert type(parse_wall_duration("2w")) is timedelta
    for text in ["1mo", "1y", "1mo1d"]:
        with pytest.raises(DurationError) as caught:
            parse_wall_duration(text)
        assert "wall-clock" in str(caught.value) and repr(text) in str(caught.value)


@pytest.mark.parametrize(("value", "text"), [
    ("45d", "45d"),
    ("6mo", "6mo"),
    ("12mo", "1y"),
    ("24mo", "2y"),
    ("1y6mo", "18mo"),  # shorter than 1y6mo
    ("14d", "2w"),
    ("12h", "12h"),
    ("1d12h", "36h"),
    ("90m", "90m"),
    ("60s", "1m"),
    ("500ms", "500ms"),
    ("1mo15d", "1mo15d"),
    ("1d1ms", "1d1ms"),
    ("0d", "0s"),
    (timedelta(days=1, microseconds=500), "1d0.5ms"),
    (timedelta(microseconds=1), "0.001ms"),
])
def test_format_gives_the_shortest_text_and_it_parses_back(value: Any, text: str) -> None:
    duration = parse_duration(value)
    assert format_duration(duration) == text
    assert str(duration) == text and repr(duration) == f"Duration({text!r})"
    assert parse_duration(text) == duration


def test_format_accepts_a_plain_timedelta() -> None:
    assert format_duration(timedelta(seconds=10)) == "10s"


@pytest.mark.parametrize(
    ("cron", "next_day"),
    [
        ("0 0 * * 0", "Sun"),  # cron's 0 is Sunday (APScheduler's own 0 would be Monday)
        ("0 0 * * 7", "Sun"),
        ("0 0 * * 1-5", "Tue"),
        ("0 0 * * 6", "Sat"),
        ("0 0 * * sat,sun", "Sat"),
        ("@weekly", "Sun"),
        ("@daily", "Tue"),
        ("0 6 15 * 5", "Fri"),  # the 15th or a Friday, as cron reads it: Friday Dec 4 comes first
        ("0 6 1 * 3", "Tue"),  # the 1st (Tuesday Dec 1) or a Wednesday
    ],
)
def test_cron_reads_the_weekday_as_cron_does(cron: str, next_day: str) -> None:
    from datetime import UTC

    from modelloop.timeutil import cron_trigger

    monday_noon = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    fire = cron_trigger(cron, "UTC").get_next_fire_time(None, monday_noon)  # type: ignore[attr-defined]
    assert fire.strftime("%a") == next_day
