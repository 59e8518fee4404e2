"""A newcomer's own table: rows whose label has not arrived, classes named by their own text, no
id column. Each works through training, serving, labels and monitoring with no workaround."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop import DataError
from modelloop.config import parse_config
from modelloop.data import derive_row_ids, row_id
from modelloop.project import Project
from tests.conftest import serve_rows


def test_training_skips_rows_whose_target_has_not_arrived_and_counts_them(
        make_project: Callable[..., Project], flights: pd.DataFrame, as_of: datetime) -> None:
    flights["delayed"] = flights["delayed"].astype("float64")
    missing = np.random.default_rng(3).random(len(flights)) < 0.15
    flights.loc[missing, "delayed"] = np.nan
    project = make_project(flights)

    result, _ = project.train(as_of=as_of)

    in_window = (flights["sched_dep"] > pd.Timestamp(result.windows.train_start)) & (
        flights["sched_dep"] <= pd.Timestamp(result.windows.labelled_until))
    assert result.rows["unlabelled"] == int((missing & in_window).sum()) > 0
    assert result.rows["train"] + result.rows["holdout"] == int((~missing & in_window).sum())
    assert result.score is not None


def _named_classes(raw_config: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(raw_config)
    raw["data"]["positive"] = "late"
    raw["data"]["negative"] = "on time"
    return raw


def test_classes_named_by_their_own_text_train_and_label(
        make_project: Callable[..., Project], flights: pd.DataFrame,
        raw_config: dict[str, Any], as_of: datetime) -> None:
    flights["delayed"] = np.where(flights["delayed"] == 1, "late", "on time")
    project = make_project(flights, parse_config(_named_classes(raw_config)))

    result, decision = project.train(as_of=as_of)
    assert result.score is not None and result.score > 0.65  # "late" learned as the positive class
    assert decision is not None and decision.outcome == "promoted"

    labels = pd.DataFrame({"flight_id": ["A", "B", "C"], "delayed": ["Late", " on time", ""]})
    assert project.ingest_labels(labels) == (2, 1)
    assert project.logs.read_labels()["delayed"].tolist() == [1, 0]
    refused = r"must be 'late' or 'on time': 1 row\(s\) are not \(rows \[2\], e.g. 'maybe'\)"
    with pytest.raises(DataError, match=refused):
        project.ingest_labels(pd.DataFrame({"flight_id": ["D", "E"], "delayed": ["late", "maybe"]}))


def test_a_table_without_an_id_gets_a_derived_one_everywhere(
        make_project: Callable[..., Project], flights: pd.DataFrame,
        raw_config: dict[str, Any], as_of: datetime) -> None:
    raw = copy.deepcopy(raw_config)
    del raw["data"]["id"]
    raw["monitoring"]["min_labelled_rows"] = 10
    table = flights.drop(columns=["flight_id"])
    project = make_project(table, parse_config(raw))
    _, decision = project.train(as_of=as_of)
    assert decision is not None and decision.outcome == "promoted"
    contract = project.contract()
    assert contract is not None and contract.derived_id and contract.names("id") == ["row_id"]

    # A day after the data: served with their time, no id.
    later = table.tail(40).copy()
    later["sched_dep"] = later["sched_dep"] + timedelta(days=2)
    features = later.drop(columns=["delayed"])
    serve_rows(project, features, "req-1")
    logged = project.logs.read_predictions(None, None)
    expected = derive_row_ids(later, "sched_dep", ["hour", "distance", "temp"], ["carrier"])
    assert logged["row_id"].tolist() == expected.tolist()

    # The rule is the documented one, by hand, for the first row.
    first = later.iloc[0]
    assert expected.iloc[0] == row_id(
        first["sched_dep"].to_pydatetime(),
        [float(first["hour"]), float(first["distance"]), float(first["temp"])],
        [first["carrier"]],
    )

    # A label file with the row's time and features (written as CSV: ints, text times) and the
    # target gets the same ids, so monitoring joins them.
    labels = later.assign(sched_dep=later["sched_dep"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    labels["hour"] = labels["hour"].astype("int64")
    assert project.ingest_labels(labels) == (40, 0)
    as_of_monitor = later["sched_dep"].max().to_pydatetime() + timedelta(days=2)
    result = project.monitor(as_of=as_of_monitor, retrain=False).result
    assert result.n_labelled == 40 and result.metric_value is not None


def test_a_label_file_without_the_id_or_the_rows_columns_names_them(
        make_project: Callable[..., Project], flights: pd.DataFrame,
        raw_config: dict[str, Any]) -> None:
    raw = copy.deepcopy(raw_config)
    del raw["data"]["id"]
    project = make_project(flights.drop(columns=["flight_id"]), parse_config(raw))
    with pytest.raises(DataError, match=r"missing column 'row_id'.*'temp', 'carrier' are missing"):
        project.ingest_labels(pd.DataFrame({
            "sched_dep": ["2024-03-02"], "hour": [5], "distance": [100.0], "delayed": [1]}))


def test_the_monitoring_metric_says_why_it_is_missing(
        make_project: Callable[..., Project], flights: pd.DataFrame, as_of: datetime) -> None:
    project = make_project()
    project.train(as_of=as_of)
    later = flights.tail(60).copy()
    later["flight_id"] = [f"why-{i}" for i in range(60)]
    later["sched_dep"] = pd.Timestamp("2024-03-10") + pd.to_timedelta(range(60), unit="min")
    serve_rows(project, later.drop(columns=["delayed"]), "why")
    at_end = datetime(2024, 3, 10, 2)

    def note(at: datetime) -> str | None:
        result = project.monitor(as_of=at, retrain=False).result
        assert result.metric_value is None
        return result.metric_note

    assert note(at_end) == "no labels have arrived for this window yet"
    labels = later[["flight_id", "delayed"]].head(40)
    project.ingest_labels(pd.concat([labels, labels.head(5)]))  # five sent twice: counted once
    assert note(at_end) == (
        "the 40 labels stored for this window are for rows newer than as-of minus "
        "monitoring.label_delay (1d), so they are not counted yet: monitor at a later --as-of "
        "to count them")
    assert note(at_end + timedelta(days=1)) == (
        "40 labelled rows, fewer than monitoring.min_labelled_rows (100)")
