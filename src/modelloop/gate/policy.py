"""Gate v0: a candidate is compared with the champion on the same holdout, never promoted for
merely being newer. The holdout is later than both models' training windows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from modelloop.config import ProjectConfig
from modelloop.data import Contract, DataSource, drop_unlabelled
from modelloop.errors import ModelloopError
from modelloop.gate.history import record_move
from modelloop.gate.validity import Check, check_validity
from modelloop.registry import STATUS_TAG, ModelVersion, Registry
from modelloop.store import MetadataDB
from modelloop.training.metrics import score


@dataclass
class GateDecision:
    version: int
    outcome: str  # promoted | rejected
    reasons: list[str]
    metric: str
    candidate_score: float | None
    champion: int | None = None
    champion_score: float | None = None
    holdout: dict[str, Any] = field(default_factory=dict)
    as_of: datetime | None = None

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
        bar = champion - tolerance if maximize else champion + tolerance
        clears = candidate >= bar if maximize else candidate <= bar
        sign = ">=" if maximize else "<="
        reasons.append(
            f"{metric} {_fmt(candidate)} {sign} champion {_fmt(champion)} "
            f"{'-' if maximize else '+'} tolerance {tolerance:.4f} = {bar:.4f}: "
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
        registry.set_tags(name, old.version, {STATUS_TAG: "retired"})
    registry.set_alias(name, "champion", version)
    registry.set_tags(name, version, {STATUS_TAG: "champion"})
    challenger = registry.alias(name, "challenger")
    if challenger is not None and challenger.version == version:
        registry.delete_alias(name, "challenger")
    return old.version if old is not None and old.version != version else None


def run_gate(
    config: ProjectConfig,
    *,
    version: int,
    source: DataSource,
    registry: Registry,
    contract: Contract,
    db: MetadataDB,
) -> GateDecision:
    """Score candidate and champion on the same holdout, decide, record, and promote if it passes."""
    name, data = config.name, config.data
    candidate = registry.get_version(name, version)
    champion = registry.alias(name, "champion")
    if champion is not None and champion.version == version:
        raise ModelloopError(f"version {version} is already the champion of {name!r}")
    start, end = _window_end(candidate, "holdout_start"), _window_end(candidate, "holdout_end")
    if start is None or end is None:
        raise ModelloopError(
            f"version {version} has no holdout window tags; it was not trained by modelloop"
        )
    champion_end = _window_end(champion, "train_end") if champion is not None else None
    if champion_end is not None and champion_end > start:
        start = champion_end  # the holdout must be later than both training windows
    rows = source.load(start.to_pydatetime(), end.to_pydatetime())  # empty when start >= end
    rows, _ = drop_unlabelled(rows, data.target)
    rows, problems = contract.check(rows, serving=False)
    holdout = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "rows": 0 if problems else len(rows),
    }
    cand_score = champ_score = None
    checks: list[Check] = []
    if not problems and len(rows):
        own = Contract.from_dict(registry.read_json(name, version, "contract.json"))
        checks = check_validity(registry, name, version, own, rows, task=config.task,
                                max_latency_ms=config.gate.max_latency_ms)
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
        maximize=config.maximize,
    )
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
        f"holdout {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}, {holdout['rows']} rows, "
        "later than both training windows",
    )
    decision = GateDecision(
        version=version,
        outcome="promoted" if passed else "rejected",
        reasons=reasons,
        metric=config.evaluation.metric,
        candidate_score=cand_score,
        champion=champion.version if champion else None,
        champion_score=champ_score,
        holdout=holdout,
        as_of=_decision_time(candidate, end),
    )
    if passed:
        replaced = promote(registry, name, version)
        record_move(db, version, replaced if replaced is not None else decision.champion,
                    action="promoted", by="gate", reason=f"gate: {reasons[-1]}")
    else:
        registry.set_tags(name, version, {STATUS_TAG: "rejected"})
        challenger = registry.alias(name, "challenger")
        if challenger is not None and challenger.version == version:
            registry.delete_alias(name, "challenger")
    registry.set_tags(
        name,
        version,
        {
            "modelloop.gate.outcome": decision.outcome,
            "modelloop.gate.reasons": " | ".join(reasons)[:4900],
            "modelloop.gate.candidate_score": _fmt(cand_score),
            "modelloop.gate.champion_score": _fmt(champ_score),
        },
    )
    db.record_decision(
        version,
        outcome=decision.outcome,
        reasons=reasons,
        metrics={
            "metric": decision.metric,
            "candidate": cand_score,
            "champion": champ_score,
            "champion_version": decision.champion,
            "holdout": holdout,
            "validity": [c.to_dict() for c in checks],
        },
        as_of=decision.as_of,
    )
    return decision
