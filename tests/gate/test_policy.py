"""The gate: a candidate is promoted only when it clears the floor and holds its own against the
champion on the same, later holdout; every decision moves the aliases and is recorded."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

from modelloop import ModelloopError
from modelloop.config import ProjectConfig, parse_config
from modelloop.data import Contract, DataSource, FileSource
from modelloop.gate import GateDecision, decide, promote, run_gate
from modelloop.gate.policy import describe
from modelloop.registry import MemoryRegistry
from modelloop.store import MetadataDB
from modelloop.training import train

DUMMY = "tests.gate.test_policy.RandomGuess"  # guesses at random: ROC AUC about 0.5


class RandomGuess(DummyClassifier):
    """A classifier that learned nothing but still answers differently for different rows (a
    constant one is refused by the validity checks before any metric)."""

    def __init__(self, strategy: str = "stratified", random_state: int = 0,
                 constant: Any = None) -> None:
        super().__init__(strategy=strategy, random_state=random_state, constant=constant)


# -- the policy alone ---------------------------------------------------------------------------


def test_with_no_champion_and_no_floor_a_candidate_is_promoted() -> None:
    ok, reasons = decide(0.51, None, metric="roc_auc", floor=None, tolerance=0.0, maximize=True)
    assert ok
    assert reasons == ["no champion yet and no gate.floor set: the first candidate is promoted"]


@pytest.mark.parametrize(("candidate", "ok"), [(0.75, True), (0.5, True), (0.4999, False)])
def test_the_floor_is_a_minimum_for_a_metric_to_maximise(candidate: float, ok: bool) -> None:
    passed, reasons = decide(candidate, None, metric="roc_auc", floor=0.5, tolerance=0.0,
                             maximize=True)
    assert passed is ok
    assert reasons[0] == (f"roc_auc {candidate:.4f} >= floor 0.5000: "
                          + ("passed" if ok else "FAILED"))


@pytest.mark.parametrize(("candidate", "ok"), [(3.0, True), (5.0, True), (5.5, False)])
def test_the_floor_is_a_ceiling_for_a_metric_to_minimise(candidate: float, ok: bool) -> None:
    passed, reasons = decide(candidate, None, metric="rmse", floor=5.0, tolerance=0.0,
                             maximize=False)
    assert passed is ok
    assert reasons[0].startswith(f"rmse {candidate:.4f} <= ceiling 5.0000")


@pytest.mark.parametrize(("candidate", "ok"), [(0.875, True), (0.5, True), (0.4375, False)])
def test_a_candidate_may_trail_the_champion_by_the_tolerance(candidate: float, ok: bool) -> None:
    passed, reasons = decide(candidate, 0.75, metric="roc_auc", floor=None, tolerance=0.25,
                             maximize=True)
    assert passed is ok
    assert reasons == [f"roc_auc {candidate:.4f} >= champion 0.7500 - tolerance 0.2500 = 0.5000: "
                       + ("passed" if ok else "FAILED")]


@pytest.mark.parametrize(("candidate", "ok"), [(1.0, True), (2.5, True), (2.75, False)])
def test_for_a_metric_to_minimise_the_tolerance_is_added(candidate: float, ok: bool) -> None:
    passed, reasons = decide(candidate, 2.0, metric="log_loss", floor=None, tolerance=0.5,
                             maximize=False)
    assert passed is ok
    assert "<= champion 2.0000 + tolerance 0.5000 = 2.5000" in reasons[0]


def test_being_newer_is_not_enough_without_tolerance() -> None:
    ok, _ = decide(0.7499, 0.75, metric="roc_auc", floor=None, tolerance=0.0, maximize=True)
    assert not ok
    ok, _ = decide(0.75, 0.75, metric="roc_auc", floor=None, tolerance=0.0, maximize=True)
    assert ok  # a tie keeps the newer model: same quality, fresher data


def test_both_checks_must_pass_and_both_are_reported() -> None:
    ok, reasons = decide(0.7, 0.8, metric="roc_auc", floor=0.6, tolerance=0.0, maximize=True)
    assert not ok
    assert [r.rsplit(": ", 1)[1] for r in reasons] == ["passed", "FAILED"]
    ok, reasons = decide(0.55, 0.5, metric="roc_auc", floor=0.6, tolerance=0.0, maximize=True)
    assert not ok
    assert [r.rsplit(": ", 1)[1] for r in reasons] == ["FAILED", "passed"]


def test_a_score_that_could_not_be_computed_is_never_promoted() -> None:
    ok, reasons = decide(None, None, metric="roc_auc", floor=None, tolerance=1.0, maximize=True)
    assert not ok
    assert "could not be computed" in reasons[0]
    ok, _ = decide(None, 0.7, metric="roc_auc", floor=0.0, tolerance=1.0, maximize=True)
    assert not ok


# -- run_gate and promote with the in-memory registry and a SQLite metadata DB ------------------


@dataclass
class Loop:
    config: ProjectConfig
    source: FileSource
    registry: MemoryRegistry
    db: MetadataDB
    contract: Contract
    project_dir: Path

    def candidate(self, as_of: datetime, *, estimator: str | None = None,
                  config: ProjectConfig | None = None) -> int:
        config = config or self.config
        if estimator is not None:
            config = config.model_copy(update={"model": config.model.model_copy(
                update={"estimator": estimator, "params": {}})})
        result = train(config, source=self.source, registry=self.registry,
                       contract=self.contract, as_of=as_of, trigger="test",
                       project_dir=self.project_dir)
        return result.version.version

    def gate(self, version: int, *, config: ProjectConfig | None = None,
             source: DataSource | None = None) -> GateDecision:
        return run_gate(config or self.config, version=version, source=source or self.source,
                        registry=self.registry, contract=self.contract, db=self.db)

    def status(self, version: int) -> str | None:
        return self.registry.get_version("flights", version).status

    def alias(self, name: str) -> int | None:
        found = self.registry.alias("flights", name)
        return None if found is None else found.version


@pytest.fixture
def loop(tmp_path: Path, flights: pd.DataFrame, config: ProjectConfig,
         write_source: Callable[..., FileSource]) -> Loop:
    return Loop(config=config, source=write_source(flights), registry=MemoryRegistry(),
                db=MetadataDB(f"sqlite:///{tmp_path / 'modelloop.db'}", model="flights"),
                contract=Contract.infer(flights, config.data, config.task),
                project_dir=tmp_path)


def changed(raw_config: dict[str, Any], section: str, **fields: Any) -> ProjectConfig:
    raw = copy.deepcopy(raw_config)
    raw.setdefault(section, {}).update(fields)
    return parse_config(raw)


def test_the_first_candidate_that_clears_the_floor_becomes_champion(
        loop: Loop, as_of: datetime) -> None:
    version = loop.candidate(as_of)
    assert loop.alias("challenger") == version and loop.status(version) == "candidate"

    decision = loop.gate(version)

    assert decision.outcome == "promoted"
    assert decision.candidate_score is not None and decision.candidate_score > 0.6
    assert decision.champion is None and decision.champion_score is None
    assert loop.alias("champion") == version
    assert loop.alias("challenger") is None
    assert loop.alias("previous") is None
    assert loop.status(version) == "champion"
    assert any("floor 0.6000: passed" in r for r in decision.reasons)
    tags = loop.registry.get_version("flights", version).tags
    assert tags["modelloop.gate.outcome"] == "promoted"
    assert tags["modelloop.gate.candidate_score"] == f"{decision.candidate_score:.4f}"


def test_the_decision_is_recorded_with_its_reasons_and_scores(
        loop: Loop, as_of: datetime) -> None:
    version = loop.candidate(as_of)
    decision = loop.gate(version)

    [recorded] = loop.db.decisions(version)
    assert recorded["outcome"] == "promoted"
    assert recorded["reasons"] == decision.reasons
    assert recorded["metrics"]["metric"] == "roc_auc"
    assert recorded["metrics"]["candidate"] == pytest.approx(decision.candidate_score)
    assert recorded["metrics"]["holdout"]["rows"] == decision.holdout["rows"] > 300
    assert recorded["as_of"] == as_of.isoformat()  # the candidate's as-of: data time, not wall clock
    assert json.loads(json.dumps(decision.to_dict()))["as_of"] == as_of.isoformat()


def test_a_candidate_below_the_floor_is_rejected_even_without_a_champion(
        loop: Loop, as_of: datetime, raw_config: dict[str, Any]) -> None:
    strict = changed(raw_config, "gate", floor=0.99)
    version = loop.candidate(as_of)
    decision = loop.gate(version, config=strict)

    assert decision.outcome == "rejected"
    assert any("floor 0.9900: FAILED" in r for r in decision.reasons)
    assert loop.alias("champion") is None
    assert loop.alias("challenger") is None
    assert loop.status(version) == "rejected"
    assert loop.db.decisions(version)[0]["outcome"] == "rejected"


def test_an_equal_candidate_replaces_the_champion_which_becomes_previous(
        loop: Loop, as_of: datetime) -> None:
    first = loop.candidate(as_of)
    loop.gate(first)
    second = loop.candidate(as_of)  # same data, same seed: the same model
    decision = loop.gate(second)

    assert decision.outcome == "promoted"
    assert decision.champion == first
    assert decision.candidate_score == pytest.approx(decision.champion_score)
    assert (loop.alias("champion"), loop.alias("previous")) == (second, first)
    assert (loop.status(first), loop.status(second)) == ("retired", "champion")


def test_a_worse_candidate_is_rejected_and_the_champion_stays(
        loop: Loop, as_of: datetime) -> None:
    champion = loop.candidate(as_of)
    loop.gate(champion)
    worse = loop.candidate(as_of, estimator=DUMMY)
    assert loop.alias("challenger") == worse

    decision = loop.gate(worse)

    assert decision.outcome == "rejected"
    assert decision.candidate_score is not None and decision.candidate_score < 0.6
    assert decision.champion == champion and decision.champion_score > 0.6
    assert any(f"champion {decision.champion_score:.4f}" in r and r.endswith("FAILED")
               for r in decision.reasons)
    assert loop.alias("champion") == champion
    assert loop.alias("previous") is None
    assert loop.alias("challenger") is None
    assert (loop.status(champion), loop.status(worse)) == ("champion", "rejected")
    [recorded] = loop.db.decisions(worse)
    assert recorded["metrics"]["champion_version"] == champion


def test_a_metric_to_minimise_promotes_the_lower_score(
        loop: Loop, as_of: datetime, raw_config: dict[str, Any]) -> None:
    raw_config["gate"]["floor"] = None
    by_log_loss = changed(raw_config, "evaluation", metric="log_loss")
    assert not by_log_loss.maximize
    baseline = loop.candidate(as_of, estimator=DUMMY, config=by_log_loss)
    assert loop.gate(baseline, config=by_log_loss).outcome == "promoted"

    better = loop.candidate(as_of, config=by_log_loss)
    decision = loop.gate(better, config=by_log_loss)
    assert decision.outcome == "promoted"
    assert decision.candidate_score < decision.champion_score
    assert any("<= champion" in r for r in decision.reasons)

    worse = loop.candidate(as_of, estimator=DUMMY, config=by_log_loss)
    assert loop.gate(worse, config=by_log_loss).outcome == "rejected"
    assert loop.alias("champion") == better


def test_the_holdout_starts_after_the_champions_training_window(loop: Loop) -> None:
    champion = loop.candidate(datetime(2024, 3, 1))  # trained up to 2024-02-19
    loop.gate(champion)
    candidate = loop.candidate(datetime(2024, 2, 25))  # its own holdout: Feb 14 to Feb 24

    decision = loop.gate(candidate)

    assert decision.holdout["start"] == "2024-02-19T00:00:00"
    assert decision.holdout["end"] == "2024-02-24T00:00:00"
    rows = loop.source.load(datetime(2024, 2, 19), datetime(2024, 2, 24))
    assert decision.holdout["rows"] == len(rows) > 0
    assert decision.reasons[0].startswith(f"holdout 2024-02-19 00:00 to 2024-02-24 00:00, "
                                          f"{len(rows)} rows")


def test_a_candidate_whose_holdout_the_champion_trained_on_is_rejected(loop: Loop) -> None:
    champion = loop.candidate(datetime(2024, 3, 1))
    loop.gate(champion)
    stale = loop.candidate(datetime(2024, 2, 20))  # its holdout ends before the champion's data

    decision = loop.gate(stale)

    assert decision.outcome == "rejected"
    assert decision.holdout["rows"] == 0
    assert any("could not be computed" in r for r in decision.reasons)
    assert loop.alias("champion") == champion


def test_a_holdout_that_breaks_the_contract_rejects_the_candidate(
        loop: Loop, as_of: datetime, flights: pd.DataFrame,
        write_source: Callable[..., FileSource]) -> None:
    version = loop.candidate(as_of)
    dirty = flights.copy()
    dirty.loc[dirty["sched_dep"] > pd.Timestamp("2024-02-25"), "hour"] = None
    decision = loop.gate(version, source=write_source(dirty, "dirty.parquet"))

    assert decision.outcome == "rejected"
    assert any("breaks the data contract" in r and "'hour'" in r for r in decision.reasons)
    assert loop.status(version) == "rejected"


def test_the_champion_cannot_be_gated_again(loop: Loop, as_of: datetime) -> None:
    version = loop.candidate(as_of)
    loop.gate(version)
    with pytest.raises(ModelloopError) as caught:
        loop.gate(version)
    assert f"version {version} is already the champion" in str(caught.value)


def test_promote_keeps_one_previous_and_retires_the_old_champion(
        loop: Loop, as_of: datetime) -> None:
    versions = [loop.candidate(as_of, estimator=DUMMY) for _ in range(3)]
    assert promote(loop.registry, "flights", versions[0]) is None
    assert promote(loop.registry, "flights", versions[1]) == versions[0]
    assert promote(loop.registry, "flights", versions[2]) == versions[1]

    assert loop.alias("champion") == versions[2]
    assert loop.alias("previous") == versions[1]
    assert loop.alias("challenger") is None  # the newest candidate was promoted
    assert [loop.status(v) for v in versions] == ["retired", "retired", "champion"]
    # Promoting the champion again changes nothing.
    assert promote(loop.registry, "flights", versions[2]) is None
    assert loop.alias("previous") == versions[1]


def test_a_decision_reads_in_one_line_as_the_issue_shows_it() -> None:
    line = describe("promoted", metric="roc_auc", candidate=0.632, champion=0.625, champion_version=3,
                    holdout={"start": "2013-10-10T00:00:00", "end": "2013-10-24T00:00:00"})
    assert line == "promoted: roc_auc 0.632 vs champion 0.625 (v3) on the 2013-10-10..24 holdout"
    across = describe("promoted", metric="rmse", candidate=1.5, champion=None, champion_version=None,
                      holdout={"start": "2013-12-20T00:00:00", "end": "2014-01-03T00:00:00"})
    assert across == "promoted: rmse 1.500, no champion before it on the 2013-12-20..2014-01-03 holdout"
    invalid = describe("rejected", metric="roc_auc", candidate=None, champion=None, champion_version=2,
                       holdout={}, reasons=["holdout ...", "validity latency: p99 80 ms > 50 ms: FAILED"])
    assert invalid == "rejected: validity latency: p99 80 ms > 50 ms"
