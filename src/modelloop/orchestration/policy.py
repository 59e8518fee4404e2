"""Policy: which alerts a monitoring run opens or closes, and when a retraining fires.

Alerts: one open alert per kind at a time (a breach that persists is the same alert, not a new
one each run); it closes only when a run at the same or a later as-of judges that kind clean
with enough data. Re-running monitoring at the same as-of changes no alert.

Retraining: an alert (drift, performance) or new data fires a retraining unless one fired within
`retraining.cooldown` of data time before (counted from the last fired trigger's as-of), so one
condition starts one retraining. A schedule and a person are not held back by the cooldown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import pandas as pd

from modelloop.config import ProjectConfig
from modelloop.monitoring.breaches import BreachKind
from modelloop.monitoring.pipeline import MonitoringResult
from modelloop.store import MetadataDB


class AlertKind(StrEnum):
    PERFORMANCE = "performance"
    DRIFT = "drift"
    #: A pipeline failed and its retries are used up.
    PIPELINE_FAILED = "pipeline_failed"


class TriggerKind(StrEnum):
    SCHEDULE = "schedule"
    DRIFT = "drift"
    PERFORMANCE = "performance"
    NEW_DATA = "new_data"
    MANUAL = "manual"


_ALERT_OF = {BreachKind.PERFORMANCE: AlertKind.PERFORMANCE, BreachKind.DRIFT: AlertKind.DRIFT}


@dataclass
class AlertChanges:
    opened: list[int] = field(default_factory=list)
    #: Open alerts the run found again: the same condition, not a new alert.
    still_open: list[int] = field(default_factory=list)
    resolved: dict[str, int] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return [*self.opened, *self.still_open]


def _judged(result: MonitoringResult, kind: BreachKind) -> bool:
    """Whether the run had enough data to call `kind` clean."""
    if kind is BreachKind.PERFORMANCE:
        return result.metric_value is not None
    return result.n_rows > 0 and result.drift is not None


def apply_alerts(db: MetadataDB, result: MonitoringResult) -> AlertChanges:
    """Open, keep or close the performance and drift alerts after a monitoring run."""
    changes = AlertChanges()
    for breach_kind, alert_kind in _ALERT_OF.items():
        breach = result.breach(breach_kind)
        if breach is not None:
            already = db.open_alerts(alert_kind)
            if already:
                changes.still_open.append(int(already[0]["id"]))
                continue
            detail: dict[str, Any] = {
                "message": breach.message,
                "metric": result.metric_value,
                "report": str(result.report_html),
            }
            if breach_kind is BreachKind.DRIFT and result.drift is not None:
                detail["drifted"] = result.drift.drifted
                detail["share"] = result.drift.share_drifted
            changes.opened.append(db.record_alert(alert_kind, as_of=result.as_of, detail=detail))
        elif _judged(result, breach_kind):
            closed = db.resolve_alerts(alert_kind, as_of=result.as_of)
            if closed:
                changes.resolved[str(alert_kind)] = closed
    return changes


@dataclass
class Trigger:
    """A retraining condition judged: fired, or held back and why."""

    kinds: list[TriggerKind]
    reason: str
    as_of: datetime
    fired: bool
    held: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fired": self.fired,
            "reason": self.reason,
            "kinds": [str(k) for k in self.kinds],
        }
        if self.held:
            out["skipped"] = self.held
        return out


def monitoring_trigger(config: ProjectConfig, result: MonitoringResult) -> list[TriggerKind]:
    """The breaches of `result` the project retrains on."""
    wanted = []
    if BreachKind.PERFORMANCE in result.breach_kinds and config.retraining.on_performance:
        wanted.append(TriggerKind.PERFORMANCE)
    if BreachKind.DRIFT in result.breach_kinds and config.retraining.on_drift:
        wanted.append(TriggerKind.DRIFT)
    return wanted


def judge_trigger(
    db: MetadataDB,
    config: ProjectConfig,
    *,
    kinds: list[TriggerKind],
    reason: str,
    as_of: datetime,
    allowed: bool = True,
    held_reason: str = "",
) -> Trigger:
    """Fire a retraining for an automatic condition unless the cooldown holds it back; every
    judgement is recorded with why."""
    last = db.last_fired_trigger()
    # Added to the last trigger's time, never compared as a length: a cooldown may count months.
    until = None if last is None else pd.Timestamp(last["as_of"]).to_pydatetime() + config.retraining.cooldown
    detail: dict[str, Any] = {"kinds": [str(k) for k in kinds]}
    if last is not None and last["reason"] == reason:
        # The same condition judged again (monitoring re-run at the same as-of): it fired once.
        return Trigger(kinds, reason, as_of, fired=False, held=f"already fired at {last['as_of']}")
    if until is not None and as_of < until:
        held = f"cooldown until {until.isoformat()}"
        db.record_trigger(reason, as_of=as_of, detail={**detail, "skipped": held}, fired=False)
        return Trigger(kinds, reason, as_of, fired=False, held=held)
    if not allowed:
        return Trigger(kinds, reason, as_of, fired=False, held=held_reason)
    db.record_trigger(reason, as_of=as_of, detail=detail, fired=True)
    return Trigger(kinds, reason, as_of, fired=True)


def record_manual(db: MetadataDB, as_of: datetime) -> None:
    """A person's (or a schedule's) training counts as the latest retraining for the cooldown."""
    db.record_trigger("manual", as_of=as_of, detail={}, fired=True)


def new_rows_since(config: ProjectConfig, last_as_of: datetime | None, latest: datetime | None,
                   count: int) -> Trigger | None:
    """The new-data condition, or None when it does not hold."""
    threshold = config.retraining.min_new_rows
    if threshold is None or latest is None or count < threshold:
        return None
    since = "the start" if last_as_of is None else last_as_of.isoformat()
    reason = f"new data: {count:,} rows newer than the last training's as-of ({since}), " \
             f"at least retraining.min_new_rows ({threshold:,})"
    return Trigger([TriggerKind.NEW_DATA], reason, latest, fired=False)


def failure_alert(db: MetadataDB, run: Mapping[str, Any], attempts: int) -> int | None:
    """Raise the alert that a pipeline failed with no retry left (once per failed chain)."""
    for alert in db.alerts(AlertKind.PIPELINE_FAILED, limit=200):
        if (alert["detail"] or {}).get("run") == run["id"]:
            return None
    detail = {
        "message": f"{run['kind']} failed {attempts} time(s), no retry left: {run['error']}",
        "run": run["id"],
        "pipeline": run["kind"],
        "error": run["error"],
    }
    as_of = pd.Timestamp(run["as_of"] or run["started_at"]).to_pydatetime()
    return db.record_alert(AlertKind.PIPELINE_FAILED, as_of=as_of, detail=detail)
