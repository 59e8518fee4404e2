"""The training pipeline: a candidate is fitted on the labels that existed at the as-of time,
registered with its evidence, and never registered when the data breaks the contract."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop import ConfigError, DataError
from modelloop.config import ProjectConfig, parse_config
from modelloop.data import Contract, FileSource, fingerprint
from modelloop.project import Project
from modelloop.registry import MemoryRegistry
from modelloop.training import TrainingResult, train

WINDOW_TAGS = {
    "modelloop.window.train_start": "2024-01-20T00:00:00",
    "modelloop.window.train_end": "2024-02-19T00:00:00",
    "modelloop.window.holdout_start": "2024-02-19T00:00:00",
    "modelloop.window.holdout_end": "2024-02-29T00:00:00",
    "modelloop.as_of": "2024-03-01T00:00:00",
}


def fit(config: ProjectConfig, source: FileSource, registry: MemoryRegistry, as_of: datetime,
        tmp_path: Path, contract: Contract | None = None,
        trigger: str = "manual") -> TrainingResult:
    return train(config, source=source, registry=registry, contract=contract, as_of=as_of,
                 trigger=trigger, project_dir=tmp_path)


def test_a_candidate_is_registered_as_challenger_with_its_evidence(
        tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig, as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    registry = MemoryRegistry()
    result = fit(config, write_source(flights), registry, as_of, tmp_path,
                 trigger="drift alert at 2024-03-01")

    version = registry.get_version("flights", result.version.version)
    assert version.version == 1
    assert registry.alias("flights", "challenger") == version
    assert registry.alias("flights", "champion") is None  # training alone promotes nothing
    assert version.status == "candidate"
    assert WINDOW_TAGS.items() <= version.tags.items()
    assert version.tags["modelloop.trigger"] == "drift alert at 2024-03-01"
    assert version.tags["modelloop.estimator"] == "sklearn.linear_model.LogisticRegression"
    assert version.tags["modelloop.code_version"] == "unknown"  # tmp_path is no git work tree
    labelled = flights[(flights["sched_dep"] > pd.Timestamp("2024-01-20"))
                       & (flights["sched_dep"] <= pd.Timestamp("2024-02-29"))]
    expected_fingerprint = fingerprint(
        Contract.infer(flights, config.data, config.task)
        .check(labelled.reset_index(drop=True), serving=False)[0])
    assert version.tags["modelloop.data_fingerprint"] == expected_fingerprint


def test_the_rows_and_score_come_from_the_windows(
        tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig, as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    result = fit(config, write_source(flights), MemoryRegistry(), as_of, tmp_path)
    stamps = flights["sched_dep"]
    in_train = (stamps > pd.Timestamp("2024-01-20")) & (stamps <= pd.Timestamp("2024-02-19"))
    in_holdout = (stamps > pd.Timestamp("2024-02-19")) & (stamps <= pd.Timestamp("2024-02-29"))
    assert result.rows == {
        "train": int(in_train.sum()), "holdout": int(in_holdout.sum()), "unlabelled": 0
    }
    assert result.metric == "roc_auc"
    assert result.score is not None and 0.65 < result.score <= 1.0


def test_the_contract_profile_and_windows_are_stored_with_the_version(
        tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig, as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    registry = MemoryRegistry()
    result = fit(config, write_source(flights), registry, as_of, tmp_path)

    contract = Contract.from_dict(registry.read_json("flights", 1, "contract.json"))
    assert contract == result.contract
    assert [r.name for r in contract.columns if r.nullable] == ["temp"]
    profile = registry.read_json("flights", 1, "profile.json")
    assert set(profile["features"]) == {"hour", "distance", "temp", "carrier"}
    assert profile["n_rows"] == result.rows["train"]
    windows = registry.read_json("flights", 1, "windows.json")
    assert windows["labelled_until"] == "2024-02-29T00:00:00"


def test_the_registered_model_predicts_probabilities_for_new_rows(
        tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig, as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    registry = MemoryRegistry()
    fit(config, write_source(flights), registry, as_of, tmp_path)
    rows = pd.DataFrame({"hour": [6.0, 22.0], "distance": [200.0, 2900.0], "temp": [None, 3.0],
                         "carrier": ["DL", "B6"]})
    predictions = registry.load_predictor("flights", 1).predict(rows)
    assert predictions.shape == (2,) and np.all((predictions >= 0) & (predictions <= 1))
    assert predictions[1] > predictions[0]


def test_rows_whose_labels_did_not_exist_yet_are_never_read(
        tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig, as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    clean = fit(config, write_source(flights, "clean.parquet"), MemoryRegistry(), as_of,
                tmp_path)
    # After 2024-02-29 (as-of minus the 1-day label delay) the rows break every rule there is.
    late = flights["sched_dep"] > pd.Timestamp("2024-02-29")
    assert late.sum() > 20
    poisoned = flights.astype({"distance": object})
    poisoned.loc[late, "hour"] = None
    poisoned.loc[late, "distance"] = "unknown"
    poisoned.loc[late, "delayed"] = 7

    registry = MemoryRegistry()
    result = fit(config, write_source(poisoned, "poisoned.csv"), registry, as_of, tmp_path)
    assert result.rows == clean.rows
    assert result.score == pytest.approx(clean.score)
    assert (registry.get_version("flights", 1).tags["modelloop.data_fingerprint"]
            == clean.version.tags["modelloop.data_fingerprint"])


def test_data_that_breaks_the_contract_registers_nothing(
        tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig, as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    contract = Contract.infer(flights, config.data, config.task)
    dirty = flights.copy()
    dirty.loc[2000, "hour"] = None  # 2024-02-09: inside the training window
    registry = MemoryRegistry()

    with pytest.raises(DataError) as caught:
        fit(config, write_source(dirty), registry, as_of, tmp_path, contract=contract)

    message = str(caught.value)
    assert "breaks the data contract; nothing was registered" in message
    assert "column 'hour' has nulls" in message
    assert "flight_ids ['F0-02000']" in message  # a row the user can look up
    assert caught.value.report["problems"][0]["flight_ids"] == ["F0-02000"]
    assert registry.versions("flights") == []
    assert registry.alias("flights", "challenger") is None


def test_text_in_a_numeric_column_fails_even_on_the_first_training(
        tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig, as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    dirty = flights.astype({"distance": object})
    dirty.loc[1500, "distance"] = "about 900"
    registry = MemoryRegistry()
    with pytest.raises(DataError) as caught:
        fit(config, write_source(dirty, "flights.csv"), registry, as_of, tmp_path, contract=None)
    assert "column 'distance' has values of the wrong type" in str(caught.value)
    assert "flight_ids ['F0-01500']" in str(caught.value)
    assert "'about 900'" in str(caught.value)
    assert registry.versions("flights") == []


def test_too_little_history_says_what_to_change(
        tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig,
        write_source: Callable[..., FileSource]) -> None:
    registry = MemoryRegistry()
    with pytest.raises(DataError) as caught:
        fit(config, write_source(flights), registry, datetime(2024, 1, 12), tmp_path)
    message = str(caught.value)
    assert message.startswith("only 0 labelled rows in the training window")
    assert "--as-of" in message and "training.window" in message
    assert registry.versions("flights") == []


def test_a_classifier_needs_both_classes(
        tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig, as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    flights["delayed"] = 0
    with pytest.raises(DataError) as caught:
        fit(config, write_source(flights), MemoryRegistry(), as_of, tmp_path)
    assert "'delayed' has one class only" in str(caught.value)


def test_an_unknown_estimator_is_a_config_error_naming_the_field(
        tmp_path: Path, flights: pd.DataFrame, raw_config: dict[str, Any], as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    raw_config["model"]["estimator"] = "sklearn.ensemble.GradientBoostedTrees"
    registry = MemoryRegistry()
    with pytest.raises(ConfigError) as caught:
        fit(parse_config(raw_config), write_source(flights), registry, as_of, tmp_path)
    assert str(caught.value).startswith("model.estimator: cannot import "
                                        "'sklearn.ensemble.GradientBoostedTrees'")
    assert registry.versions("flights") == []


def test_a_bad_parameter_value_is_a_config_error_naming_the_field(
        tmp_path: Path, flights: pd.DataFrame, raw_config: dict[str, Any], as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    raw_config["model"]["params"] = {"C": "abc"}
    with pytest.raises(ConfigError, match=r"model\.params"):
        fit(parse_config(raw_config), write_source(flights), MemoryRegistry(), as_of, tmp_path)


def test_a_regressor_trains_and_is_scored_by_its_metric(
        tmp_path: Path, flights: pd.DataFrame, raw_config: dict[str, Any], as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    rng = np.random.default_rng(1)
    flights["delay_minutes"] = (2.0 * flights["hour"] + 20 * (flights["carrier"] == "B6")
                                + rng.normal(0, 5, len(flights)))
    raw = copy.deepcopy(raw_config)
    raw.update(task="regression", model={"estimator": "sklearn.ensemble.RandomForestRegressor",
                                         "params": {"n_estimators": 20, "random_state": 0}})
    raw["data"]["target"] = "delay_minutes"
    raw["evaluation"]["metric"] = "rmse"
    raw["gate"] = {"floor": None}
    config = parse_config(raw)
    registry = MemoryRegistry()

    result = fit(config, write_source(flights), registry, as_of, tmp_path)

    assert result.metric == "rmse"
    assert result.score is not None and result.score < flights["delay_minutes"].std()
    rows = pd.DataFrame({"hour": [6.0, 20.0], "distance": [500.0, 500.0], "temp": [1.0, None],
                         "carrier": ["UA", "B6"]})
    predictions = registry.load_predictor("flights", 1).predict(rows)
    assert predictions[1] - predictions[0] > 30  # 2 min per hour, +20 for B6


def test_a_project_records_a_failed_run_and_a_validation_report(
        make_project: Callable[..., Project], flights: pd.DataFrame, as_of: datetime,
        write_source: Callable[..., FileSource]) -> None:
    project = make_project()
    _, decision = project.train(as_of=datetime(2024, 2, 20))
    assert decision is not None and decision.outcome == "promoted"
    # The contract of the first training holds from now on: `hour` had no nulls then.
    dirty = flights.copy()
    dirty.loc[dirty["sched_dep"] > pd.Timestamp("2024-02-25"), "hour"] = None
    project.source = write_source(dirty, "dirty.parquet")

    with pytest.raises(DataError):
        project.train(as_of=as_of)

    assert [v.version for v in project.registry.versions("flights")] == [1]
    assert project.champion() is not None and project.champion().version == 1
    latest = project.db.runs(limit=1)[0]
    assert latest["status"] == "failed"
    assert "column 'hour' has nulls" in latest["error"]
    [report] = sorted(project.reports_dir.glob("validation-*.json"))
    assert json.loads(report.read_text())["problems"][0]["column"] == "hour"
