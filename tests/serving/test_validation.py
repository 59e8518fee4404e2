"""Request validation compiled from the data contract: what a client sends is either turned into
clean values (floats, text, ids, UTC times) or refused with a message naming column and rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from modelloop import BadRequest
from modelloop.data import ColumnRule, Contract
from modelloop.serving import Columns, Limits, RequestValidator
from modelloop.serving.validation import validate_labels

CONTRACT = Contract(
    task="classification",
    columns=(
        ColumnRule("flight_id", "id", False),
        ColumnRule("sched_dep", "timestamp", False),
        ColumnRule("hour", "numeric", False),
        ColumnRule("temp", "numeric", True),
        ColumnRule("carrier", "categorical", False),
        ColumnRule("channel", "categorical", True),
        ColumnRule("delayed", "target", False),
    ),
)
NOW = datetime(2024, 3, 1, 12, 0)
GOOD: dict[str, Any] = {"hour": 5, "temp": 1.5, "carrier": "UA", "channel": None,
                       "flight_id": "F0", "sched_dep": "2024-03-01T08:00"}


def columns(*rows: dict[str, Any]) -> Columns:
    names = list(dict.fromkeys(k for row in rows for k in row))
    return Columns({n: [row.get(n) for row in rows] for n in names}, len(rows))


def validate(*rows: dict[str, Any], limits: Limits | None = None) -> Any:
    return RequestValidator(CONTRACT, limits or Limits()).validate(columns(*rows), now=NOW)


def refused(*rows: dict[str, Any], limits: Limits | None = None) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        validate(*rows, limits=limits)
    return caught.value


def test_clean_values_come_out_typed() -> None:
    rows = validate({**GOOD, "flight_id": 7, "sched_dep": "2024-03-01T08:30:00+02:00"},
                    {**GOOD, "hour": "6", "carrier": 9, "channel": 2.0, "flight_id": "F8",
                     "sched_dep": "2024-03-01"})
    assert rows.features["hour"] == [5.0, 6.0]
    assert rows.features["carrier"] == ["UA", "9"]
    assert rows.features["channel"] == [None, "2"]  # 2.0 and 2 are one category
    assert rows.ids == [7, "F8"]
    assert rows.times == [datetime(2024, 3, 1, 6, 30), datetime(2024, 3, 1)]


def test_id_and_time_are_optional() -> None:
    rows = validate({k: v for k, v in GOOD.items() if k not in ("flight_id", "sched_dep")})
    assert rows.ids is None and rows.times is None and rows.n_rows == 1


@pytest.mark.parametrize(("change", "column", "problem", "says"), [
    ({"hour": [1, 2]}, "hour", "wrong_type", "is not a scalar"),
    ({"hour": {"a": 1}}, "hour", "wrong_type", "is not a scalar"),
    ({"hour": "inf"}, "hour", "wrong_type", "not a finite number"),
    ({"hour": "1e999"}, "hour", "wrong_type", "not a finite number"),
    ({"hour": "9" * 5000}, "hour", "wrong_type", "not a finite number"),
    ({"hour": "far"}, "hour", "wrong_type", "is not a number"),
    ({"hour": None}, "hour", "null", "does not allow"),
    ({"carrier": ["UA"]}, "carrier", "wrong_type", "is not a scalar"),
    ({"carrier": "U" * 1025}, "carrier", "bad_value", "serving.max_value_length"),
    ({"flight_id": ["F1"]}, "flight_id", "wrong_type", "not a string or an integer"),
    ({"flight_id": {"id": 1}}, "flight_id", "wrong_type", "not a string or an integer"),
    ({"flight_id": True}, "flight_id", "wrong_type", "not a string or an integer"),
    ({"flight_id": 1.5}, "flight_id", "wrong_type", "not a string or an integer"),
    ({"flight_id": 2**70}, "flight_id", "bad_value", "past 64 bits"),
    ({"flight_id": ""}, "flight_id", "bad_value", "empty string"),
    ({"flight_id": None}, "flight_id", "null", "is empty"),
    ({"flight_id": "F" * 2000}, "flight_id", "bad_value", "serving.max_value_length"),
    ({"sched_dep": "soon"}, "sched_dep", "wrong_type", "not a date or time"),
    ({"sched_dep": 1709280000}, "sched_dep", "wrong_type", "bare number"),
    ({"sched_dep": 1709280000.5}, "sched_dep", "wrong_type", "bare number"),
    ({"sched_dep": ["2024-03-01"]}, "sched_dep", "wrong_type", "not a date or time"),
    ({"sched_dep": "2024-03-03T00:00:01"}, "sched_dep", "bad_value", "max_clock_skew"),
    ({"sched_dep": "9999-12-31"}, "sched_dep", "bad_value", "max_clock_skew"),
    ({"sched_dep": "1200-01-01"}, "sched_dep", "bad_value", "before 1678"),
    ({"sched_dep": None}, "sched_dep", "null", "is empty"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_a_hostile_value_is_refused_naming_column_and_row(
        change: dict[str, Any], column: str, problem: str, says: str) -> None:
    error = refused(GOOD, {**GOOD, **change})
    assert error.column == column
    assert error.problem == problem
    assert says in str(error)
    assert "rows [1]" in str(error)


def test_a_time_just_inside_the_clock_skew_is_fine() -> None:
    rows = validate({**GOOD, "sched_dep": "2024-03-02T11:59:59"})
    assert rows.times == [datetime(2024, 3, 2, 11, 59, 59)]
    error = refused({**GOOD, "sched_dep": "2024-03-01T13:00"}, limits=Limits(max_clock_skew=timedelta(0)))
    assert "max_clock_skew" in str(error)


def test_every_broken_column_and_every_missing_one_is_named_in_one_message() -> None:
    error = refused({"hour": None, "temp": "warm", "flight_id": "F1"})
    message = str(error)
    assert "2 columns are missing: 'carrier', 'channel'" in message
    assert "column 'hour'" in message and "column 'temp'" in message
    assert error.problem == "missing_column"


def test_rows_are_listed_with_examples_and_counted() -> None:
    error = refused(*[{**GOOD, "hour": f"x{i}" if i % 2 else i} for i in range(20)])
    assert "10 row(s) (rows [1, 3, 5, 7, 9, ...], e.g. 'x1', 'x3', 'x5')" in str(error)


def test_an_empty_request_is_refused() -> None:
    with pytest.raises(BadRequest, match="no rows"):
        RequestValidator(CONTRACT).validate(Columns({"hour": []}, 0))


def test_max_value_length_is_a_setting() -> None:
    assert validate({**GOOD, "carrier": "ABCDE"}).features["carrier"] == ["ABCDE"]
    assert "max_value_length (4" in str(refused({**GOOD, "carrier": "ABCDE"},
                                                limits=Limits(max_value_length=4)))


def labels(*rows: dict[str, Any], task: str = "classification") -> tuple[list[Any], list[Any], int]:
    return validate_labels(columns(*rows), id_column="flight_id", target="delayed", task=task)


def test_labels_with_an_empty_target_are_skipped_and_counted() -> None:
    ids, targets, skipped = labels({"flight_id": "F1", "delayed": 1},
                                   {"flight_id": "F2", "delayed": None},
                                   {"flight_id": "F3", "delayed": ""},
                                   {"flight_id": 4, "delayed": "0"},
                                   {"flight_id": "F5", "delayed": True})
    assert (ids, targets, skipped) == (["F1", 4, "F5"], [1, 0, 1], 2)


@pytest.mark.parametrize(("row", "column", "says"), [
    ({"flight_id": "F1", "delayed": [1]}, "delayed", "is not a scalar"),
    ({"flight_id": "F1", "delayed": {"v": 1}}, "delayed", "is not a scalar"),
    ({"flight_id": "F1", "delayed": 2}, "delayed", "must be 0 or 1"),
    ({"flight_id": "F1", "delayed": "late"}, "delayed", "must be 0 or 1"),
    ({"flight_id": ["F1"], "delayed": 1}, "flight_id", "not a string or an integer"),
    ({"flight_id": None, "delayed": 1}, "flight_id", "is empty"),
])
def test_a_label_that_cannot_be_used_is_refused(row: dict[str, Any], column: str, says: str) -> None:
    with pytest.raises(BadRequest) as caught:
        labels({"flight_id": "F0", "delayed": 0}, row)
    assert caught.value.column == column and says in str(caught.value)


def test_regression_labels_must_be_finite_numbers() -> None:
    assert labels({"flight_id": 1, "delayed": "2.5"}, task="regression")[1] == [2.5]
    with pytest.raises(BadRequest, match="finite"):
        labels({"flight_id": 1, "delayed": "inf"}, task="regression")


def test_labels_without_the_id_column_name_it() -> None:
    with pytest.raises(BadRequest, match="'flight_id'"):
        labels({"id": "F1", "delayed": 1})
