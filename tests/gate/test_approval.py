"""A gate a team can trust: a person approves or rejects what passed, may force past a failure
with a reason, the served version may be a refit, recent production traffic is replayed, and
the tolerance can be relative. Every decision names who and why in the history."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from modelloop.config import parse_config
from modelloop.errors import ModelloopError
from modelloop.gate import decide
from modelloop.project import Project
from tests.conftest import AS_OF, RAW_CONFIG, serve_rows


def _config(gate: dict[str, Any] | None = None, **sections: Any) -> Any:
    raw = copy.deepcopy(RAW_CONFIG)
    raw["gate"] = {**raw["gate"], **(gate or {})}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


def _status(project: Project, version: int) -> str | None:
    return project.registry.get_version(project.name, version).status


def test_manual_approval_waits_then_a_person_promotes_or_rejects(
    make_project: Callable[..., Project],
) -> None:
    project = make_project(config=_config({"approval": "manual"}))
    _, decision = project.train(as_of=AS_OF)
    assert decision is not None and decision.outcome == "pending_approval"
    assert project.champion() is None and _status(project, 1) == "pending_approval"
    approved = project.approve(1, by="ana", reason="holdout and replay look right")
    assert approved.outcome == "approved" and project.champion().version == 1
    assert _status(project, 1) == "champion"

    _, second = project.train(as_of=AS_OF)
    assert second is not None and second.outcome == "pending_approval"
    assert project.champion().version == 1  # unchanged while it waits
    rejected = project.reject(2, by="ben", reason="the new carrier mix is not understood yet")
    assert rejected.outcome == "rejected" and _status(project, 2) == "rejected"
    assert project.challenger() is None and project.champion().version == 1

    history = project.history()
    assert [(e["action"], e["version"], e["by"]) for e in history[:4]] == [
        ("rejected", 2, "ben"),
        ("pending_approval", 2, "gate"),
        ("approved", 1, "ana"),
        ("pending_approval", 1, "gate"),
    ]
    assert "the new carrier mix" in history[0]["reason"]
    with pytest.raises(ModelloopError, match="is rejected, not pending_approval"):
        project.approve(2, by="ana", reason="second thoughts")


def test_an_approval_refuses_when_the_champion_changed_since_the_gate(
    make_project: Callable[..., Project],
) -> None:
    project = make_project(config=_config({"approval": "manual"}))
    project.train(as_of=AS_OF)
    project.approve(1, by="ana", reason="first")
    project.train(as_of=AS_OF)  # v2 waits, compared with v1
    project.train(as_of=AS_OF)  # v3 waits, compared with v1
    project.approve(3, by="ana", reason="v3 first")
    with pytest.raises(ModelloopError, match="champion changed since version 2 was gated"):
        project.approve(2, by="ana", reason="now v2")
    assert project.champion().version == 3 and _status(project, 2) == "pending_approval"


def test_force_promotes_past_a_failing_gate_recorded_as_forced(
    make_project: Callable[..., Project],
) -> None:
    project = make_project(config=_config({"floor": 0.99}))
    _, decision = project.train(as_of=AS_OF)
    assert decision is not None and decision.outcome == "rejected"
    forced = project.gate(1, force=("cleo", "the floor is wrong for this season; ticket 42"))
    assert forced.outcome == "forced" and project.champion().version == 1
    [event] = [e for e in project.history() if e["action"] == "forced"]
    assert event["by"] == "cleo" and "ticket 42" in event["reason"]
    assert any("FAILED" in reason for reason in forced.reasons)  # the failure stays on record


def test_refit_serves_a_version_trained_on_the_holdout_too(
    make_project: Callable[..., Project],
) -> None:
    project = make_project(config=_config(training={"refit": True}))
    result, decision = project.train(as_of=AS_OF)
    assert decision is not None and decision.outcome == "promoted"
    assert decision.serves == 2 and project.champion().version == 2
    refit = project.registry.get_version(project.name, 2)
    assert refit.tags["modelloop.refit_of"] == "1"
    assert refit.tags["modelloop.window.train_end"] == result.version.tags["modelloop.window.holdout_end"]
    assert _status(project, 1) == "retired"
    recorded = project.db.decisions(version=1)[0]["metrics"]["refit"]
    assert recorded["version"] == 2 and recorded["served"] is True
    assert all(check["passed"] for check in recorded["validity"])
    with pytest.raises(ModelloopError, match="refit of version 1"):
        project.gate(2)


def test_a_relative_tolerance_allows_a_share_of_the_champions_score() -> None:
    ok, reasons = decide(0.70, 0.72, metric="roc_auc", floor=None, tolerance=0.0,
                         relative_tolerance=0.05, maximize=True)
    assert ok and "relative tolerance 5.00% 0.0360" in reasons[-1]
    bad, _ = decide(0.68, 0.72, metric="roc_auc", floor=None, tolerance=0.0,
                    relative_tolerance=0.05, maximize=True)
    assert not bad
    wider, reasons = decide(0.70, 0.72, metric="roc_auc", floor=None, tolerance=0.05,
                            relative_tolerance=0.01, maximize=True)
    assert wider and "tolerance 0.0500" in reasons[-1]  # the larger allowance applies
    rmse, _ = decide(10.4, 10.0, metric="rmse", floor=None, tolerance=0.0,
                     relative_tolerance=0.05, maximize=False)
    assert rmse


def test_replay_rejects_a_holdout_winner_that_loses_recent_production(
    make_project: Callable[..., Project], make_flights: Callable[..., pd.DataFrame]
) -> None:
    """The source's recent labels say one thing, production's labels another: the candidate
    fitted to the source wins its holdout and loses the traffic it would serve."""
    truth = make_flights(n_rows=6000, days=60)
    flipped = truth.copy()
    later = flipped["sched_dep"] >= pd.Timestamp(datetime(2024, 1, 26))
    flipped.loc[later, "delayed"] = 1 - flipped.loc[later, "delayed"]
    config = _config({"floor": None, "replay": "10d", "replay_window": "3d", "max_lost_windows": 0},
                     monitoring={"min_labelled_rows": 50})
    project = make_project(flipped, config)
    project.train(as_of=datetime(2024, 1, 27))  # v1 learns the first pattern
    assert project.champion().version == 1
    served = truth[truth["sched_dep"] > pd.Timestamp(AS_OF - timedelta(days=9))]
    serve_rows(project, served.drop(columns=["delayed"]), "prod")
    project.ingest_labels(served[["flight_id", "delayed"]])

    _, decision = project.train(as_of=AS_OF)  # v2 learns the flipped pattern
    assert decision is not None
    assert decision.candidate_score is not None and decision.champion_score is not None
    assert decision.candidate_score > decision.champion_score  # it wins the holdout...
    assert decision.outcome == "rejected"  # ...and loses production
    replay = project.db.decisions(version=2)[0]["metrics"]["replay"]
    assert replay["passed"] is False and replay["lost"] >= 1
    judged = [w for w in replay["windows"] if w["verdict"] != "too small"]
    assert judged and all(w["candidate"] < w["champion"] for w in judged)
    assert any(reason.startswith("replay (10d") and reason.endswith("FAILED") for reason in decision.reasons)
    assert project.champion().version == 1


def test_a_candidate_fitted_on_shuffled_labels_is_rejected(
    make_project: Callable[..., Project], flights: pd.DataFrame, tmp_path: Any
) -> None:
    from modelloop.data import FileSource, ProjectSource

    project = make_project()
    project.train(as_of=AS_OF - timedelta(days=5))
    champion_score = project.db.decisions(version=1)[0]["metrics"]["candidate"]
    shuffled = flights.copy()
    train_end = pd.Timestamp(AS_OF - timedelta(days=11))  # the next training's window ends here
    early = shuffled["sched_dep"] <= train_end
    shuffled.loc[early, "delayed"] = (
        shuffled.loc[early, "delayed"].sample(frac=1.0, random_state=3).to_numpy()
    )
    shuffled.to_parquet(tmp_path / "shuffled.parquet", index=False)
    data = project.config.data
    project.source = ProjectSource(FileSource("shuffled.parquet", tmp_path, data.timestamp), data,
                                   project.config.task)
    _, decision = project.train(as_of=AS_OF)
    assert decision is not None and decision.outcome == "rejected"
    assert decision.candidate_score is not None and decision.candidate_score < 0.6 < champion_score
    assert any("floor" in r and r.endswith("FAILED") for r in decision.reasons)
    assert project.champion().version == 1 and _status(project, 2) == "rejected"


def _description(project: Project, version: int) -> str | None:
    return project.registry.get_version(project.name, version).description


def test_each_version_says_its_gate_decision_in_one_line(make_project: Callable[..., Project]) -> None:
    """What MLflow's UI shows beside a version: the decision, the scores and the holdout."""
    project = make_project(config=_config({"approval": "manual"}))
    project.train(as_of=AS_OF)
    first = _description(project, 1)
    assert first is not None and first.startswith("passed the gate, waits for approval: roc_auc 0.")
    assert "no champion before it" in first and re.search(r"on the 2024-\d\d-\d\d\.\.\d\d holdout$", first)
    project.approve(1, by="ana", reason="looks right")
    assert (_description(project, 1) or "").startswith("approved by ana: roc_auc 0.")

    project.train(as_of=AS_OF)
    project.reject(2, by="ben", reason="carrier mix not understood")
    assert _description(project, 2) == "rejected by ben: carrier mix not understood"

    project.train(as_of=AS_OF)
    approved = project.approve(3, by="ana", reason="ok")
    line = _description(project, 3) or ""
    champion = approved.champion_score
    assert champion is not None and f"vs champion {champion:.3f} (v1)" in line
    project.rollback(reason="latency regression", by="cleo")
    assert (_description(project, 3) or "").startswith("rolled back by cleo on ")
    assert (_description(project, 3) or "").endswith(": latency regression (v1 serves again)")


def test_a_rejection_by_the_gate_names_the_failed_check(make_project: Callable[..., Project]) -> None:
    project = make_project(config=_config({"floor": 0.99}))
    project.train(as_of=AS_OF)
    line = _description(project, 1) or ""
    assert line.startswith("rejected: roc_auc 0.") and "; failed: roc_auc 0." in line
    assert "floor 0.9900" in line
