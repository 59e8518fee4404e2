"""Gate v0: a candidate is compared with the champion on the same holdout, never promoted for
merely being newer. The holdout is later than both models' training windows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import pandas as pd

from modelloop.config import ProjectConfig
from modelloop.data import Contract, DataSource, drop_unlabelled
from modelloop.errors import ModelloopError
from modelloop.gate.history import record_move
from modelloop.gate.modeltests import ModelTest
from modelloop.gate.replay import Replay, replay
from modelloop.gate.validity import Check, check_validity
from modelloop.registry import STATUS_TAG, ModelVersion, Registry, VersionStatus
from modelloop.stats import score
from modelloop.store import LogStore, MetadataDB


@dataclass
class GateDecision:
    version: int
    outcome: str  # an Outcome
    reasons: list[str]
    metric: str
    candidate_score: float | None
    champion: int | None = None
    champion_score: float | None = None
    holdout: dict[str, Any] = field(default_factory=dict)
    as_of: datetime | None = None
    #: The version that serves after this decision: `version`, or its refit (training.refit).
    serves: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["as_of"] = self.as_of.isoformat() if self.as_of else None
        return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def decide(
    candidate: float | None,
    champion: float | None,
    *,
    metric: str,
    floor: float | None,
    tolerance: float,
    maximize: bool,
    relative_tolerance: float | None = None,
) -> tuple[bool, list[str]]:
    """The policy alone: (promote?, reasons). Every check adds a reason, passed or failed."""
    reasons: list[str] = []
    ok = True
    if candidate is None:
        return False, [f"{metric} could not be computed on the holdout (too few rows or one class)"]
    if floor is not None:
        clears = candidate >= floor if maximize else candidate <= floor
        sign = ">=" if maximize else "<="
        reasons.append(
            f"{metric} {_fmt(candidate)} {sign} {'floor' if maximize else 'ceiling'} {floor:.4f}: "
            + ("passed" if clears else "FAILED")
        )
        ok &= clears
    if champion is None:
        if floor is None:
            reasons.append("no champion yet and no gate.floor set: the first candidate is promoted")
        else:
            bound = "floor" if maximize else "ceiling"
            reasons.append(f"no champion scored on this holdout: the {bound} decides")
    else:
        allowed, named = tolerance, "tolerance"
        if relative_tolerance is not None and relative_tolerance * abs(champion) > allowed:
            allowed = relative_tolerance * abs(champion)
            named = f"relative tolerance {relative_tolerance:.2%}"
        bar = champion - allowed if maximize else champion + allowed
        clears = candidate >= bar if maximize else candidate <= bar
        sign = ">=" if maximize else "<="
        reasons.append(
            f"{metric} {_fmt(candidate)} {sign} champion {_fmt(champion)} "
            f"{'-' if maximize else '+'} {named} {allowed:.4f} = {bar:.4f}: "
            + ("passed" if clears else "FAILED")
        )
        ok &= clears
    return ok, reasons


def _window_end(version: ModelVersion, key: str) -> pd.Timestamp | None:
    value = version.tags.get(f"modelloop.window.{key}")
    return pd.Timestamp(value) if value else None


def _decision_time(candidate: ModelVersion, holdout_end: pd.Timestamp) -> datetime:
    """The data time the decision belongs to: the candidate's as-of time when it was trained."""
    tagged = candidate.tags.get("modelloop.as_of")
    return (pd.Timestamp(tagged) if tagged else holdout_end).to_pydatetime()


def predict(registry: Registry, name: str, version: int, rows: pd.DataFrame) -> Any:
    """Score `rows` with `version`, on that version's own features (from its stored contract):
    a champion trained before the feature list changed still gets what it was trained on."""
    contract = Contract.from_dict(registry.read_json(name, version, "contract.json"))
    return registry.load_predictor(name, version).predict(rows[contract.features])


def promote(registry: Registry, name: str, version: int) -> int | None:
    """Move `champion` to `version`, keep the old one as `previous`; returns the old champion."""
    old = registry.alias(name, "champion")
    if old is not None and old.version != version:
        registry.set_alias(name, "previous", old.version)
        registry.set_tags(name, old.version, {STATUS_TAG: VersionStatus.RETIRED})
    registry.set_alias(name, "champion", version)
    registry.set_tags(name, version, {STATUS_TAG: VersionStatus.CHAMPION})
    challenger = registry.alias(name, "challenger")
    if challenger is not None and challenger.version == version:
        registry.delete_alias(name, "challenger")
    return old.version if old is not None and old.version != version else None


class Outcome(StrEnum):
    """What a gate decision (or a person) did to a version."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    PENDING_APPROVAL = "pending_approval"  # passed; waits for `modelloop approve`
    APPROVED = "approved"  # a person approved a pending version: it serves
    FORCED = "forced"  # promoted past a failing gate by a person, with a reason
    ROLLED_BACK = "rolled_back"


#: Outcomes after which the version serves.
SERVES = (Outcome.PROMOTED, Outcome.APPROVED, Outcome.FORCED)

#: Refit a gated version on its training window plus its holdout; returns the new version.
Refit = Callable[[int], int]


@dataclass
class _Holdout:
    start: pd.Timestamp
    end: pd.Timestamp
    rows: pd.DataFrame
    problems: list[Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": 0 if self.problems else len(self.rows),
        }


def _holdout(
    config: ProjectConfig,
    candidate: ModelVersion,
    champion: ModelVersion | None,
    source: DataSource,
    contract: Contract,
) -> _Holdout:
    """The candidate's holdout, starting no earlier than the champion's training end, so it is
    later than both training windows."""
    start, end = _window_end(candidate, "holdout_start"), _window_end(candidate, "holdout_end")
    if start is None or end is None:
        raise ModelloopError(
            f"version {candidate.version} has no holdout window tags; it was not trained by modelloop"
        )
    champion_end = _window_end(champion, "train_end") if champion is not None else None
    if champion_end is not None and champion_end > start:
        start = champion_end
    rows = source.load(start.to_pydatetime(), end.to_pydatetime())  # empty when start >= end
    rows, _ = drop_unlabelled(rows, config.data.target)
    rows, problems = contract.check(rows, serving=False)
    return _Holdout(start, end, rows, list(problems))


def _validity(
    config: ProjectConfig,
    registry: Registry,
    version: int,
    rows: pd.DataFrame,
    model_tests: Sequence[ModelTest] = (),
) -> list[Check]:
    own = Contract.from_dict(registry.read_json(config.name, version, "contract.json"))
    return check_validity(registry, config.name, version, own, rows, task=config.task,
                          max_latency_ms=config.gate.max_latency_ms, model_tests=model_tests)


def run_gate(
    config: ProjectConfig,
    *,
    version: int,
    source: DataSource,
    registry: Registry,
    contract: Contract,
    db: MetadataDB,
    logs: LogStore | None = None,
    refit: Refit | None = None,
    force: tuple[str, str] | None = None,
    model_tests: Sequence[ModelTest] = (),
) -> GateDecision:
    """Validity checks, then candidate and champion on the same holdout (and on replayed recent
    traffic with `gate.replay`); decide, record, and promote if it passes (or wait for a person
    with `gate.approval: manual`). `force=(by, reason)` promotes past a failing gate, recorded as
    forced. Callers serialize gates, approvals and rollbacks of one model (a lock)."""
    name, data = config.name, config.data
    candidate = registry.get_version(name, version)
    champion = registry.alias(name, "champion")
    if champion is not None and champion.version == version:
        raise ModelloopError(f"version {version} is already the champion of {name!r}")
    holdout = _holdout(config, candidate, champion, source, contract)
    rows, problems = holdout.rows, holdout.problems
    cand_score = champ_score = None
    checks: list[Check] = []
    if not problems and len(rows):
        checks = _validity(config, registry, version, rows, model_tests)
    invalid = [c for c in checks if not c.passed]
    if not problems and len(rows) and not invalid:
        truth = rows[data.target]
        cand_score = score(config.evaluation.metric, truth, predict(registry, name, version, rows))
        if champion is not None:
            champ_score = score(
                config.evaluation.metric, truth, predict(registry, name, champion.version, rows)
            )
    passed, reasons = decide(
        cand_score,
        champ_score,
        metric=config.evaluation.metric,
        floor=config.gate.floor,
        tolerance=config.gate.tolerance,
        relative_tolerance=config.gate.relative_tolerance,
        maximize=config.maximize,
    )
    replayed: Replay | None = None
    if config.gate.replay is not None and logs is not None and not invalid and not problems:
        replayed = replay(config, registry=registry, logs=logs, candidate=candidate, champion=champion,
                          predict=lambda v, r: predict(registry, name, v, r))
        reasons.append(replayed.reason)
        passed &= replayed.passed
    if problems:
        reasons.insert(
            0, "the holdout breaks the data contract: " + "; ".join(p.describe() for p in problems)
        )
        passed = False
    if invalid:
        reasons[:] = [f"validity {c.name}: {c.detail}: FAILED" for c in invalid]
        passed = False
    reasons.insert(
        0,
        f"holdout {holdout.start:%Y-%m-%d %H:%M} to {holdout.end:%Y-%m-%d %H:%M}, "
        f"{holdout.to_dict()['rows']} rows, later than both training windows",
    )
    outcome = Outcome.PROMOTED if passed else Outcome.REJECTED
    metrics: dict[str, Any] = {
        "metric": config.evaluation.metric,
        "candidate": cand_score,
        "champion": champ_score,
        "champion_version": champion.version if champion else None,
        "holdout": holdout.to_dict(),
        "validity": [c.to_dict() for c in checks],
    }
    if replayed is not None:
        metrics["replay"] = replayed.to_dict()
    if not passed and force is not None:
        by, why = force
        outcome = Outcome.FORCED
        reasons.append(f"forced past the gate by {by}: {why}")
        metrics.update({"by": by, "forced_reason": why})
    elif passed and config.gate.approval == "manual":
        outcome = Outcome.PENDING_APPROVAL
        reasons.append("gate.approval is manual: waits for `modelloop approve` (or `reject`)")
    decision = GateDecision(
        version=version,
        outcome=outcome,
        reasons=reasons,
        metric=config.evaluation.metric,
        candidate_score=cand_score,
        champion=champion.version if champion else None,
        champion_score=champ_score,
        holdout=holdout.to_dict(),
        as_of=_decision_time(candidate, holdout.end),
    )
    if outcome in SERVES:
        serving = _refit_and_check(config, registry, version, rows, refit, metrics, model_tests)
        decision.serves = serving
        replaced = promote(registry, name, serving)
        record_move(db, serving, replaced if replaced is not None else decision.champion,
                    action=str(outcome), by=force[0] if force and outcome is Outcome.FORCED else "gate",
                    reason=f"gate: {reasons[-1]}")
    elif outcome is Outcome.PENDING_APPROVAL:
        registry.set_tags(name, version, {STATUS_TAG: VersionStatus.PENDING_APPROVAL})
    else:
        registry.set_tags(name, version, {STATUS_TAG: VersionStatus.REJECTED})
        _drop_challenger(registry, name, version)
    _tag_decision(registry, name, version, outcome, reasons, cand_score, champ_score,
                  describe(outcome, metric=config.evaluation.metric, candidate=cand_score,
                           champion=champ_score, champion_version=decision.champion,
                           holdout=decision.holdout, reasons=reasons,
                           by=force[0] if outcome is Outcome.FORCED and force else None))
    _record(registry, db, name, version, outcome, reasons, metrics, decision.as_of)
    return decision


def _record(
    registry: Registry,
    db: MetadataDB,
    name: str,
    version: int,
    outcome: str,
    reasons: list[str],
    metrics: dict[str, Any],
    as_of: datetime | None,
) -> int:
    """The decision in `modelloop.db` and, as evidence beside the model, an artifact of the
    version's MLflow run (`gate/decision-<id>.json`)."""
    decision_id = db.record_decision(version, outcome=outcome, reasons=reasons, metrics=metrics,
                                     as_of=as_of)
    evidence = {"id": decision_id, "version": version, "outcome": str(outcome), "reasons": reasons,
                "evidence": metrics, "as_of": as_of.isoformat() if as_of else None}
    registry.write_json(name, version, f"gate/decision-{decision_id}.json", evidence)
    return decision_id


def _refit_and_check(
    config: ProjectConfig,
    registry: Registry,
    version: int,
    rows: pd.DataFrame,
    refit: Refit | None,
    metrics: dict[str, Any],
    model_tests: Sequence[ModelTest] = (),
) -> int:
    """The version that will serve: `version`, or its refit (`training.refit`) once the refit
    passes the validity checks again. Records both in `metrics`."""
    if not config.training.refit or refit is None:
        return version
    refitted = refit(version)
    checks = _validity(config, registry, refitted, rows, model_tests) if len(rows) else []
    metrics["refit"] = {"version": refitted, "of": version, "validity": [c.to_dict() for c in checks]}
    failed = [c for c in checks if not c.passed]
    if failed:
        registry.set_tags(config.name, refitted, {STATUS_TAG: VersionStatus.REJECTED})
        metrics["refit"]["served"] = False
        return version  # the gated version serves; the refit's failure is on record
    registry.set_tags(config.name, version, {STATUS_TAG: VersionStatus.RETIRED,
                                             "modelloop.refit_as": str(refitted)})
    metrics["refit"]["served"] = True
    return refitted


def _drop_challenger(registry: Registry, name: str, version: int) -> None:
    challenger = registry.alias(name, "challenger")
    if challenger is not None and challenger.version == version:
        registry.delete_alias(name, "challenger")


def describe(
    outcome: str,
    *,
    metric: str,
    candidate: float | None,
    champion: float | None,
    champion_version: int | None,
    holdout: Mapping[str, Any],
    reasons: Sequence[str] = (),
    by: str | None = None,
) -> str:
    """A gate decision in one line, for the registry's description of the version (MLflow's UI):
    `promoted: roc_auc 0.632 vs champion 0.625 (v3) on the 2013-10-10..24 holdout`; a failed
    check is named after the scores (`rejected: ...; failed: validity latency ...`)."""
    labels = {
        Outcome.PENDING_APPROVAL: "passed the gate, waits for approval",
        Outcome.APPROVED: f"approved by {by}",
        Outcome.FORCED: f"forced past the gate by {by}",
    }
    line = labels.get(Outcome(outcome), str(outcome))
    if candidate is not None:
        line += f": {metric} {candidate:.3f}"
        if champion is not None:
            line += f" vs champion {champion:.3f}" + (f" (v{champion_version})" if champion_version else "")
        elif champion_version is None:
            line += ", no champion before it"
        window = _span(holdout.get("start"), holdout.get("end"))
        if window:
            line += f" on the {window} holdout"
    failed = next((r.removesuffix(": FAILED") for r in reasons if r.endswith(": FAILED")), None)
    if failed and outcome in (Outcome.REJECTED, Outcome.FORCED):
        line += f"; failed: {failed}" if candidate is not None else f": {failed}"
    return line if len(line) <= 500 else line[:497] + "..."


def _span(start: Any, end: Any) -> str:
    """`2013-10-10..24`, `2013-10-10..11-07` or `2013-12-20..2014-01-03`: the window's start and
    end dates as the gate's reasons name them (`holdout 2013-10-10 00:00 to 2013-10-24 00:00`);
    empty when either is missing."""
    if not start or not end:
        return ""
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    if first.year != last.year:
        return f"{first:%Y-%m-%d}..{last:%Y-%m-%d}"
    if first.month != last.month:
        return f"{first:%Y-%m-%d}..{last:%m-%d}"
    return f"{first:%Y-%m-%d}..{last:%d}"


def _tag_decision(
    registry: Registry,
    name: str,
    version: int,
    outcome: str,
    reasons: list[str],
    cand_score: float | None,
    champ_score: float | None,
    description: str,
) -> None:
    registry.set_description(name, version, description)
    registry.set_tags(
        name,
        version,
        {
            "modelloop.gate.outcome": str(outcome),
            "modelloop.gate.reasons": " | ".join(reasons)[:4900],
            "modelloop.gate.candidate_score": _fmt(cand_score),
            "modelloop.gate.champion_score": _fmt(champ_score),
        },
    )


def _pending_decision(db: MetadataDB, version: int) -> dict[str, Any]:
    for decision in db.decisions(version=version, limit=20):
        if decision["outcome"] == Outcome.PENDING_APPROVAL:
            return decision
    raise ModelloopError(f"version {version} has no gate decision waiting for approval")


def approve(
    config: ProjectConfig,
    *,
    version: int,
    by: str,
    reason: str,
    registry: Registry,
    db: MetadataDB,
    source: DataSource,
    contract: Contract,
    refit: Refit | None = None,
) -> GateDecision:
    """A person approves a version that passed the gate and waits: it serves, if the champion is
    still the one the gate compared it with."""
    name = config.name
    if not reason.strip():
        raise ModelloopError("an approval needs a reason (it is kept with the decision)")
    candidate = registry.get_version(name, version)
    if candidate.status != VersionStatus.PENDING_APPROVAL:
        raise ModelloopError(
            f"version {version} is {candidate.status or 'not gated'}, not pending_approval: only a "
            "version that passed the gate under gate.approval: manual can be approved"
        )
    pending = _pending_decision(db, version)
    compared = (pending["metrics"] or {}).get("champion_version")
    champion = registry.alias(name, "champion")
    now = champion.version if champion else None
    if now != compared:
        raise ModelloopError(
            f"the champion changed since version {version} was gated (it was compared with "
            f"{'no champion' if compared is None else f'version {compared}'}, the champion is now "
            f"{'none' if now is None else f'version {now}'}): gate it again with "
            f"`modelloop gate {version}`"
        )
    metrics = {**(pending["metrics"] or {}), "by": by, "approved_reason": reason,
               "pending_decision": pending["id"]}
    rows = pd.DataFrame()
    if config.training.refit:
        rows = _holdout(config, candidate, champion, source, contract).rows
    serving = _refit_and_check(config, registry, version, rows, refit, metrics)
    replaced = promote(registry, name, serving)
    reasons = [*pending["reasons"], f"approved by {by}: {reason}"]
    record_move(db, serving, replaced, action=Outcome.APPROVED, by=by, reason=reason)
    _tag_decision(registry, name, version, Outcome.APPROVED, reasons,
                  metrics.get("candidate"), metrics.get("champion"),
                  describe(Outcome.APPROVED, metric=config.evaluation.metric,
                           candidate=metrics.get("candidate"), champion=metrics.get("champion"),
                           champion_version=metrics.get("champion_version"),
                           holdout=metrics.get("holdout") or {}, by=by))
    as_of = datetime.fromisoformat(pending["as_of"]) if pending["as_of"] else None
    _record(registry, db, name, version, Outcome.APPROVED, reasons, metrics, as_of)
    decision = GateDecision(
        version=version,
        outcome=Outcome.APPROVED,
        reasons=reasons,
        metric=config.evaluation.metric,
        candidate_score=metrics.get("candidate"),
        champion=replaced,
        champion_score=metrics.get("champion"),
        holdout=metrics.get("holdout") or {},
        as_of=as_of,
    )
    decision.serves = serving
    return decision


def reject(
    config: ProjectConfig, *, version: int, by: str, reason: str, registry: Registry, db: MetadataDB
) -> GateDecision:
    """A person rejects a version waiting for approval (or not yet gated): it never serves."""
    name = config.name
    if not reason.strip():
        raise ModelloopError("a rejection needs a reason (it is kept with the decision)")
    candidate = registry.get_version(name, version)
    if candidate.status not in (VersionStatus.PENDING_APPROVAL, VersionStatus.CANDIDATE):
        raise ModelloopError(
            f"version {version} is {candidate.status or 'untagged'}: only a candidate or a version "
            "pending approval can be rejected (roll back a champion with `modelloop rollback`)"
        )
    registry.set_tags(name, version, {STATUS_TAG: VersionStatus.REJECTED})
    _drop_challenger(registry, name, version)
    reasons = [f"rejected by {by}: {reason}"]
    _tag_decision(registry, name, version, Outcome.REJECTED, reasons, None, None,
                  f"rejected by {by}: {reason}")
    champion = registry.alias(name, "champion")
    current = champion.version if champion else None
    metrics = {"by": by, "rejected_reason": reason, "champion_version": current}
    _record(registry, db, name, version, Outcome.REJECTED, reasons, metrics, None)
    return GateDecision(version=version, outcome=Outcome.REJECTED, reasons=reasons,
                        metric=config.evaluation.metric, candidate_score=None, champion=current)
