"""The data contract: inferred from the first data, it rejects missing columns, wrong types and
disallowed nulls with a problem that names the column and the rows, and it survives storage."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from modelloop.config import ProjectConfig
from modelloop.data import ColumnRule, Contract, Problem, contract_report


@pytest.fixture
def contract(flights: pd.DataFrame, config: ProjectConfig) -> Contract:
    return Contract.infer(flights, config.data, config.task)


def by_column(problems: list[Problem]) -> dict[str, Problem]:
    assert len({p.column for p in problems}) == len(problems), problems
    return {p.column: p for p in problems}


def test_nulls_are_allowed_where_the_first_data_had_them(contract: Contract) -> None:
    rules = {rule.name: rule for rule in contract.columns}
    assert rules["temp"] == ColumnRule("temp", "numeric", nullable=True)
    assert rules["hour"] == ColumnRule("hour", "numeric", nullable=False)
    assert rules["carrier"] == ColumnRule("carrier", "categorical", nullable=False)
    assert rules["flight_id"].role == "id" and not rules["flight_id"].nullable
    assert rules["sched_dep"].role == "timestamp" and not rules["sched_dep"].nullable
    assert rules["delayed"].role == "target" and not rules["delayed"].nullable
    assert contract.features == ["hour", "distance", "temp", "carrier"]


def test_data_that_keeps_the_contract_has_no_problems(contract: Contract,
                                                      flights: pd.DataFrame) -> None:
    checked, problems = contract.check(flights, serving=False)
    assert problems == []
    assert len(checked) == len(flights)
    assert checked["hour"].dtype == "float64"
    assert checked["delayed"].dtype == "int64"


def test_a_missing_column_is_named(contract: Contract, flights: pd.DataFrame) -> None:
    _, problems = contract.check(flights.drop(columns=["carrier"]), serving=False)
    assert [(p.column, p.problem) for p in problems] == [("carrier", "missing_column")]
    assert problems[0].describe() == "column 'carrier' is missing"


def test_text_in_a_numeric_column_names_the_column_and_the_row(
        contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(8).astype({"distance": object})
    frame.loc[5, "distance"] = "abc"
    _, problems = contract.check(frame, serving=False)
    problem = by_column(problems)["distance"]
    assert problem.problem == "wrong_type"
    assert problem.rows == [5] and problem.count == 1
    assert "'distance'" in problem.describe()
    assert "rows [5]" in problem.describe()
    assert "'abc'" in problem.describe()
    assert len(problems) == 1


def test_a_bad_value_is_shown_once(contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(8).astype({"distance": object})
    frame.loc[5, "distance"] = "abc"
    _, problems = contract.check(frame, serving=False)
    assert problems[0].describe().count("'abc'") == 1


def test_training_data_problems_name_rows_by_their_id(contract: Contract,
                                                      flights: pd.DataFrame) -> None:
    frame = flights.iloc[100:110].copy()
    frame.loc[105, "hour"] = None
    frame.loc[107, "delayed"] = 3
    checked, problems = contract.check(frame, serving=False, name_rows_by_id=True)
    found = by_column(problems)
    assert found["hour"].rows == ["F0-00105"]
    assert "flight_ids ['F0-00105']" in found["hour"].describe()
    assert found["delayed"].to_dict()["flight_ids"] == ["F0-00107"]
    # Valid data keeps its own index: naming rows by id does not leak into the result.
    checked, problems = contract.check(flights.iloc[100:110], serving=False, name_rows_by_id=True)
    assert problems == [] and checked.index.tolist() == list(range(100, 110))


def test_a_column_that_cannot_be_coerced_at_all_is_described_plainly(
        contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(1).astype({"hour": object})
    frame.at[0, "hour"] = [1, 2]
    _, problems = contract.check(frame, serving=True)
    described = by_column(problems)["hour"].describe()
    assert "rows []" not in described
    assert "'object'" not in described
    assert "2 row(s)" not in described  # there is one row


def test_numbers_sent_as_text_are_coerced_not_rejected(contract: Contract,
                                                       flights: pd.DataFrame) -> None:
    frame = flights.head(3).astype({"hour": object})
    frame["hour"] = ["5", "6.5", "7"]
    checked, problems = contract.check(frame, serving=False)
    assert problems == []
    assert checked["hour"].tolist() == [5.0, 6.5, 7.0]


def test_a_null_in_a_feature_that_never_had_one_is_refused(
        contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(10).copy()
    frame.loc[[2, 7], "hour"] = None
    _, problems = contract.check(frame, serving=False)
    problem = by_column(problems)["hour"]
    assert problem.problem == "null"
    assert problem.rows == [2, 7] and problem.count == 2
    assert "does not allow" in problem.describe() and "'hour'" in problem.describe()


def test_a_null_in_a_categorical_feature_that_never_had_one_is_refused(
        contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(10).copy()
    frame.loc[4, "carrier"] = None
    _, problems = contract.check(frame, serving=True)
    assert [(p.column, p.problem, p.rows) for p in problems] == [("carrier", "null", [4])]


def test_a_nullable_feature_accepts_nulls(contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(10).copy()
    frame["temp"] = None
    checked, problems = contract.check(frame, serving=False)
    assert problems == []
    assert checked["temp"].isna().all() and checked["temp"].dtype == "float64"


def test_serving_needs_only_the_features(contract: Contract, flights: pd.DataFrame) -> None:
    request = flights.head(5)[["hour", "distance", "temp", "carrier"]]
    _, problems = contract.check(request, serving=True)
    assert problems == []
    # The same rows are not enough to train on: id, timestamp and target are required there.
    _, problems = contract.check(request, serving=False)
    assert sorted(p.column for p in problems) == ["delayed", "flight_id", "sched_dep"]
    assert {p.problem for p in problems} == {"missing_column"}


def test_serving_still_needs_every_feature(contract: Contract, flights: pd.DataFrame) -> None:
    request = flights.head(5)[["hour", "distance", "carrier"]]
    _, problems = contract.check(request, serving=True)
    assert [(p.column, p.problem) for p in problems] == [("temp", "missing_column")]


def test_serving_checks_a_timestamp_when_one_is_sent(contract: Contract,
                                                     flights: pd.DataFrame) -> None:
    request = flights.head(3).drop(columns=["delayed"]).astype({"sched_dep": object})
    request.loc[1, "sched_dep"] = "not a time"
    _, problems = contract.check(request, serving=True)
    assert [(p.column, p.problem, p.rows) for p in problems] == [("sched_dep", "wrong_type", [1])]


def test_a_classification_target_outside_zero_and_one_is_flagged(
        contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(10).copy()
    frame.loc[3, "delayed"] = 2
    frame.loc[6, "delayed"] = -1
    _, problems = contract.check(frame, serving=False)
    problem = by_column(problems)["delayed"]
    assert problem.problem == "bad_value"
    assert problem.rows == [3, 6]
    assert "outside those allowed" in problem.describe()


def test_a_boolean_classification_target_is_read_as_zero_and_one(
        contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(4).copy()
    frame["delayed"] = [True, False, True, True]
    checked, problems = contract.check(frame, serving=False)
    assert problems == []
    assert checked["delayed"].tolist() == [1, 0, 1, 1]


def test_a_regression_target_takes_any_number(flights: pd.DataFrame,
                                              config: ProjectConfig) -> None:
    contract = Contract.infer(flights, config.data, "regression")
    frame = flights.head(3).astype({"delayed": "float64"})
    frame["delayed"] = [12.5, -3.0, 400.0]
    checked, problems = contract.check(frame, serving=False)
    assert problems == []
    assert checked["delayed"].tolist() == [12.5, -3.0, 400.0]


def test_categoricals_are_compared_as_text(contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(2).astype({"carrier": object})
    frame["carrier"] = [9, "UA"]
    checked, problems = contract.check(frame, serving=True)
    assert problems == []
    assert checked["carrier"].tolist() == ["9", "UA"]


def test_every_problem_is_reported_not_just_the_first(contract: Contract,
                                                      flights: pd.DataFrame) -> None:
    frame = flights.head(6).drop(columns=["carrier"]).astype({"distance": object})
    frame.loc[1, "distance"] = "far"
    frame.loc[2, "hour"] = None
    _, problems = contract.check(frame, serving=False)
    assert {(p.column, p.problem) for p in problems} == {
        ("carrier", "missing_column"), ("distance", "wrong_type"), ("hour", "null")}


def test_the_contract_round_trips_through_json(contract: Contract,
                                               flights: pd.DataFrame) -> None:
    stored = json.loads(json.dumps(contract.to_dict()))
    restored = Contract.from_dict(stored)
    assert restored == contract
    # ...and enforces the same rules after the trip.
    frame = flights.head(5).copy()
    frame.loc[0, "hour"] = None
    frame.loc[1, "temp"] = None
    _, problems = restored.check(frame, serving=True)
    assert [(p.column, p.problem) for p in problems] == [("hour", "null")]


def test_the_report_is_plain_json_with_a_message_per_problem(
        contract: Contract, flights: pd.DataFrame) -> None:
    frame = flights.head(10).copy()
    frame.loc[4, "hour"] = None
    _, problems = contract.check(frame, serving=False)
    report = contract_report(problems, origin="flights.parquet")
    decoded = json.loads(json.dumps(report, allow_nan=False))
    assert decoded["origin"] == "flights.parquet"
    assert decoded["problems"] == [{
        "column": "hour", "problem": "null", "count": 1, "rows": [4], "examples": [],
        "message": "column 'hour' has nulls, which the contract does not allow: 1 row(s) (rows [4])",
    }]
