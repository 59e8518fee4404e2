"""The pipelines as `modelloop up` runs them, on a real project (in-memory registry and log,
SQLite ledger): the new-data trigger, runs that find nothing new, and a candidate whose run failed
never reaching the gate."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from modelloop.config import parse_config
from modelloop.errors import ModelloopError
from modelloop.orchestration import Origin, RunRequest
from modelloop.project import LEDGER_RUN_TAG, Project
from tests.conftest import AS_OF, RAW_CONFIG, serve_rows

SCHEDULE = RunRequest(origin=Origin.SCHEDULE, trigger="schedule 0 6 * * *")


def _config(monitoring: dict[str, Any] | None = None, **retraining: Any) -> Any:
    raw = copy.deepcopy(RAW_CONFIG)
    raw["retraining"] = retraining
    raw["monitoring"] = {**raw["monitoring"], **(monitoring or {})}
    return parse_config(raw)


def test_new_data_trigger(make_project: Callable[..., Project],
                          make_flights: Callable[..., pd.DataFrame]) -> None:
    frame = make_flights(n_rows=4000, days=70)
    project = make_project(frame, _config(min_new_rows=200, cooldown="3d"))
    project.train(as_of=AS_OF)
    fired = project.check_new_data()
    assert fired is not None and fired["fired"] is True and fired["kinds"] == ["new_data"]
    assert fired["version"] == 2 and "rows newer than the last training's as-of" in fired["reason"]
    [run] = project.runs(pipeline="train", limit=1)
    assert run["origin"] == "trigger" and run["status"] == "succeeded"
    assert run["trigger"].startswith("new data:")
    # Trained at the newest row: nothing newer now.
    assert project.check_new_data() is None


def test_too_few_new_rows_or_no_setting_is_no_trigger(make_project: Callable[..., Project]) -> None:
    project = make_project(config=_config(min_new_rows=10_000))
    project.train(as_of=AS_OF - timedelta(days=5))
    assert project.check_new_data() is None
    off = make_project()
    off.train(as_of=AS_OF - timedelta(days=5))
    assert off.check_new_data() is None


def test_a_scheduled_run_with_nothing_new_succeeds_and_says_so(make_project: Callable[..., Project]) -> None:
    project = make_project()
    empty = project.run_pipeline("monitor", SCHEDULE)
    assert "prediction log is empty" in empty["note"]
    latest = project.latest_data_time()
    project.train(as_of=latest)
    again = project.run_pipeline("train", SCHEDULE)
    assert "no data newer than the last training's as-of" in again["note"]
    runs = project.runs(limit=3)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded", "succeeded"]
    assert [r["produced"].get("note") is not None for r in runs] == [True, False, True]
    assert len(project.registry.versions(project.name)) == 1  # no identical version registered


def test_a_candidate_whose_run_failed_is_tagged_failed_and_never_gated(
    make_project: Callable[..., Project], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project()
    project.train(as_of=AS_OF)

    def unreachable(*_: Any, **__: Any) -> Any:
        raise ModelloopError("the registry could not be read: connection refused")

    monkeypatch.setattr("modelloop.gate.run_gate", unreachable)
    with pytest.raises(ModelloopError, match="connection refused"):
        project.train(as_of=AS_OF)
    monkeypatch.undo()
    version = project.registry.get_version(project.name, 2)
    assert version.status == "failed" and "connection refused" in version.tags["modelloop.failed_reason"]
    assert version.tags[LEDGER_RUN_TAG] == str(project.runs(limit=1)[0]["id"])
    assert project.challenger() is None
    with pytest.raises(ModelloopError, match="tagged failed"):
        project.gate(2)
    assert project.champion() is not None and project.champion().version == 1


def test_a_dead_training_runs_candidate_is_failed_when_the_ledger_finds_it(
    make_project: Callable[..., Project],
) -> None:
    project = make_project()
    result, _ = project.train(as_of=AS_OF, gate=False)
    run_id = int(result.version.tags[LEDGER_RUN_TAG])
    project.registry.set_tags(project.name, 1, {"modelloop.status": "candidate"})
    project._on_dead_run(project.db.get_run(run_id) | {"error": "its process died"})
    assert project.registry.get_version(project.name, 1).status == "failed"


def test_monitoring_rerun_at_one_as_of_opens_one_alert_per_subject_and_fires_one_retraining(
    make_project: Callable[..., Project], flights: pd.DataFrame
) -> None:
    project = make_project(config=_config({"drift_share": 0.3}, cooldown="1d"))
    project.train(as_of=AS_OF - timedelta(days=10))
    recent = flights[flights["sched_dep"] > AS_OF - timedelta(days=7)].copy()
    recent["distance"] = recent["distance"] * 3 + 500  # a shift no one can miss
    recent["temp"] = recent["temp"] + 25
    serve_rows(project, recent.drop(columns=["delayed"]), "req-1")

    first = project.monitor(as_of=AS_OF)
    pairs = {(b.kind, b.subject) for b in first.result.breaches}
    assert "drift" in first.result.breach_kinds and len(first.alerts) == len(pairs)
    [distance] = [a for a in project.alerts() if (a["kind"], a["subject"]) == ("drift", "distance")]
    assert first.trigger is not None and first.trigger["fired"] and first.trigger["version"] == 2
    again = project.monitor(as_of=AS_OF)
    assert again.alerts == first.alerts  # the same alerts, still open, none new
    assert again.trigger is not None and not again.trigger["fired"]
    assert "already fired" in again.trigger["skipped"]
    assert len(project.db.open_alerts()) == len(pairs)
    assert project.alerts(kind="drift", status=None)[-1]["seen"] == 1 == distance["seen"]
    trained = [r for r in project.runs(pipeline="train") if r["origin"] == "trigger"]
    assert len(trained) == 1 and trained[0]["trigger"].startswith("monitoring alert at")
