"""Project: the facade's own decisions (contract lifetime, label checks, monitoring triggers)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelloop.config import parse_config
from modelloop.errors import DataError, ModelloopError
from modelloop.project import Project
from tests.conftest import RAW_CONFIG, serve_rows


def test_the_contract_is_inferred_once_and_kept(
    make_project: Callable[..., Project], as_of: datetime
) -> None:
    project = make_project()
    project.train(as_of=as_of)
    first = project.contract()
    assert first is not None
    project.train(as_of=as_of)
    assert project.contract() == first


def test_a_changed_feature_list_gets_a_new_contract(
    make_project: Callable[..., Project], raw_config: dict[str, Any], as_of: datetime
) -> None:
    project = make_project()
    project.train(as_of=as_of)
    numeric = project.config.data.features.numeric
    changed = copy.deepcopy(raw_config)
    changed["data"]["features"]["numeric"] = numeric[:-1]
    project.config = parse_config(changed, "modelloop.yaml")
    result, _ = project.train(as_of=as_of)
    contract = project.contract()
    assert contract is not None and contract.names("numeric") == numeric[:-1]
    assert (
        project.registry.read_json(project.name, result.version.version, "contract.json")
        == contract.to_dict()
    )


def test_labels_must_be_usable_by_the_metric(make_project: Callable[..., Project]) -> None:
    project = make_project()
    refused = (r"'delayed' must be 0 or 1 \(or true/false, yes/no\): "
               r"1 row\(s\) are not \(rows \[2\], e.g. 'maybe'\)")
    with pytest.raises(DataError, match=refused):
        project.ingest_labels(pd.DataFrame({"flight_id": [1, 2], "delayed": [1, "maybe"]}))
    assert project.logs.read_labels().empty
    assert project.ingest_labels(pd.DataFrame({"flight_id": [1, 2], "delayed": [1, 0]})) == (2, 0)


def test_labels_that_have_not_arrived_are_skipped_and_counted(make_project: Callable[..., Project]) -> None:
    project = make_project()
    frame = pd.DataFrame({"flight_id": [1, 2, 3, None], "delayed": [1, None, "", None]})
    assert project.ingest_labels(frame) == (1, 3)
    assert project.logs.read_labels()["flight_id"].tolist() == [1]


def test_monitoring_an_empty_log_says_what_to_do(make_project: Callable[..., Project]) -> None:
    project = make_project()
    with pytest.raises(ModelloopError, match="prediction log is empty"):
        project.monitor()


def test_serving_without_a_champion_says_what_to_do(make_project: Callable[..., Project]) -> None:
    with pytest.raises(ModelloopError, match="no champion yet"):
        make_project().load_served_model()


def test_monitoring_counts_only_labels_that_had_arrived_by_as_of(
    make_project: Callable[..., Project], flights: pd.DataFrame, as_of: datetime
) -> None:
    project = make_project()
    project.train(as_of=as_of - pd.Timedelta(days=10))
    recent = flights[flights["sched_dep"] > as_of - pd.Timedelta(days=7)]
    serve_rows(project, recent.drop(columns=["delayed"]), "req-1")
    project.ingest_labels(recent[["flight_id", "delayed"]])  # every label, even those "from the future"

    result = project.monitor(as_of=as_of, retrain=False).result
    arrived = recent["sched_dep"] <= as_of - project.config.monitoring.label_delay
    assert result.n_rows == len(recent)
    assert result.n_labelled == int(arrived.sum()) < len(recent)


def test_backends_name_kind_masked_location_and_origin(
    tmp_path: Path, flights: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from modelloop.project import open_project

    flights.to_parquet(tmp_path / "flights.parquet", index=False)
    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(copy.deepcopy(RAW_CONFIG)), encoding="utf-8")
    monkeypatch.delenv("MODELLOOP_TRACKING_URI", raising=False)
    monkeypatch.setenv("MODELLOOP_DB_URL", "postgresql+psycopg://ana:p%40ss@db.example:5433/loop")
    monkeypatch.setenv("MODELLOOP_STORAGE", str(tmp_path / "logs"))
    backends = open_project(tmp_path / "modelloop.yaml", tmp_path / "home").backends()
    assert backends["metadata"] == {"kind": "postgresql", "origin": "$MODELLOOP_DB_URL",
                                    "location": "postgresql+psycopg://ana:***@db.example:5433/loop"}
    assert backends["tracking"] == {"kind": "sqlite", "origin": "default",
                                    "location": f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"}
    assert backends["logs"] == {"kind": "file", "origin": "$MODELLOOP_STORAGE",
                                "location": str(tmp_path / "logs")}
    assert backends["data"] == {"kind": "file", "origin": "project file",
                                "location": str(tmp_path / "flights.parquet")}


def test_an_in_process_project_names_its_backends_memory_and_checks_the_rest(
    make_project: Callable[..., Project],
) -> None:
    project = make_project()
    kinds = {role: backend["kind"] for role, backend in project.backends().items()}
    assert kinds == {"tracking": "memory", "artifacts": "memory", "metadata": "sqlite",
                     "logs": "memory", "data": "file"}
    checks = project.doctor()
    assert [c.name for c in checks] == ["data source", "migrations", "metadata DB"]
    assert all(c.ok for c in checks), checks
    import sqlite3

    with sqlite3.connect(project.db.url.removeprefix("sqlite:///")) as connection:
        assert connection.execute("SELECT key FROM modelloop_state").fetchall() == []  # probe gone


def test_a_data_source_without_rows_fails_the_doctor(
    make_project: Callable[..., Project], flights: pd.DataFrame
) -> None:
    [data] = [c for c in make_project(flights.iloc[:0]).doctor() if c.name == "data source"]
    assert not data.ok and data.problem == "not found" and "no rows" in data.detail
    assert data.detail.startswith("data source (file at ")
