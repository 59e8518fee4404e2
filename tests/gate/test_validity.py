"""Validity before any metric: a candidate that raises on a missing value the contract allows,
answers NaN, or answers the same for every row is rejected with the reason, whatever its
holdout score; a sound one passes with every check's numbers recorded; the gate fails closed
when the registry cannot say who the champion is."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop import BackendError
from modelloop.config import parse_config
from modelloop.project import Project


def _with_broken_version(project: Project, predict: Callable[[Any, pd.DataFrame], Any]) -> None:
    load = project.registry.load_predictor

    class Broken:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def predict(self, frame: pd.DataFrame) -> Any:
            return predict(self.inner, frame)

    def load_predictor(name: str, version: int) -> Any:
        inner = load(name, version)
        return Broken(inner) if version == 2 else inner

    project.registry.load_predictor = load_predictor  # type: ignore[method-assign]


def _gate_second(project: Project, as_of: datetime) -> dict[str, Any]:
    project.train(as_of=as_of)
    second, _ = project.train(as_of=as_of, gate=False)
    decision = project.gate(second.version.version)
    recorded = project.db.decisions(version=2)[0]
    return {"decision": decision, "recorded": recorded}


def test_a_candidate_raising_on_a_missing_value_is_rejected(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = make_project()

    def raise_on_null(inner: Any, frame: pd.DataFrame) -> Any:
        if frame.isna().to_numpy().any():
            raise ValueError("Input contains NaN")
        return inner.predict(frame)

    _with_broken_version(project, raise_on_null)
    out = _gate_second(project, as_of)
    assert out["decision"].outcome == "rejected"
    assert any(r.startswith("validity predicts: raised on rows covering the contract")
               and "Input contains NaN" in r for r in out["decision"].reasons)
    assert project.registry.alias(project.name, "champion").version == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("answer", "check"), [
    (lambda inner, frame: np.full(len(frame), np.nan), "finite"),
    (lambda inner, frame: np.full(len(frame), 0.3), "not_constant"),
    (lambda inner, frame: np.zeros((len(frame), 2)), "shape"),
])
def test_nan_constant_or_misshapen_answers_are_rejected(
        make_project: Callable[..., Project], as_of: datetime,
        answer: Callable[[Any, pd.DataFrame], Any], check: str) -> None:
    project = make_project()
    _with_broken_version(project, answer)
    out = _gate_second(project, as_of)
    assert out["decision"].outcome == "rejected"
    assert any(r.startswith(f"validity {check}:") for r in out["decision"].reasons)
    failed = [c for c in out["recorded"]["metrics"]["validity"] if not c["passed"]]
    assert [c["name"] for c in failed] == [check]


def test_a_sound_candidate_passes_with_every_check_recorded(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = make_project()
    out = _gate_second(project, as_of)
    checks = {c["name"]: c for c in out["recorded"]["metrics"]["validity"]}
    assert set(checks) == {"loads", "predicts", "finite", "not_constant", "latency"}
    assert all(c["passed"] for c in checks.values())
    assert checks["predicts"]["numbers"]["edge_rows"] >= 2  # a missing temp, an unseen carrier
    assert checks["latency"]["numbers"]["one_row_ms"] > 0


def test_a_latency_budget_rejects_a_slow_candidate(
        make_project: Callable[..., Project], raw_config: dict[str, Any], as_of: datetime) -> None:
    raw = copy.deepcopy(raw_config)
    raw["gate"]["max_latency_ms"] = 0.000001
    project = make_project(config=parse_config(raw))
    project.train(as_of=as_of, gate=False)
    decision = project.gate(1)
    assert decision.outcome == "rejected"
    assert any(r.startswith("validity latency: one row in") for r in decision.reasons)


def test_a_registry_that_cannot_name_the_champion_promotes_nothing(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = make_project()
    project.train(as_of=as_of)
    second, _ = project.train(as_of=as_of, gate=False)
    registry = project.registry
    real_alias = registry.alias

    def failing_alias(name: str, alias: str) -> Any:
        if alias == "champion":
            raise BackendError("the tracking server did not answer")
        return real_alias(name, alias)

    registry.alias = failing_alias  # type: ignore[method-assign]
    with pytest.raises(BackendError, match="did not answer"):
        project.gate(second.version.version)
    registry.alias = real_alias  # type: ignore[method-assign]
    assert registry.alias(project.name, "champion").version == 1  # type: ignore[union-attr]
    assert registry.get_version(project.name, 2).status == "candidate"
    assert [d["version"] for d in project.db.decisions()] == [1]
