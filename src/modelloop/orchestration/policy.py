"""Policy: when a retraining fires. (Which alerts a monitoring run opens or resolves lives in
`modelloop.orchestration.alerts`; its names are imported here too, for older imports.)

Retraining: an alert (drift, performance) or new data fires a retraining unless one fired within
`retraining.cooldown` of data time before (counted from the last fired trigger's as-of), so one
condition starts one retraining. A schedule and a person are not held back by the cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from modelloop.config import ProjectConfig
from modelloop.monitoring.breaches import BreachKind
from modelloop.monitoring.pipeline import MonitoringResult
from modelloop.orchestration.alerts import AlertChanges as AlertChanges
from modelloop.orchestration.alerts import AlertKind as AlertKind
from modelloop.orchestration.alerts import apply_alerts as apply_alerts
from modelloop.orchestration.alerts import failure_alert as failure_alert
from modelloop.store import MetadataDB
from modelloop.timeutil import parse_time


class TriggerKind(StrEnum):
    SCHEDULE = "schedule"
    DRIFT = "drift"
    PERFORMANCE = "performance"
    NEW_DATA = "new_data"
    MANUAL = "manual"


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
    """The conditions of `result` the project retrains on: the primary metric past its floor
    on labels (not an estimate, not one segment), and drift of more than `drift_share` of the
    counted features (one drifting feature is an alert, not a reason to retrain)."""
    return [kind for kind, _why in retraining_reasons(config, result)]


def retraining_reasons(config: ProjectConfig, result: MonitoringResult) -> list[tuple[TriggerKind, str]]:
    """`monitoring_trigger`'s conditions, each with the words that say why."""
    wanted: list[tuple[TriggerKind, str]] = []
    primary = next(
        (b for b in result.breaches if b.kind is BreachKind.PERFORMANCE and b.subject == result.metric),
        None,
    )
    if primary is not None and config.retraining.on_performance:
        wanted.append((TriggerKind.PERFORMANCE, primary.message))
    if result.drift_alarm and config.retraining.on_drift:
        wanted.append((TriggerKind.DRIFT, result.drift_alarm))
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
    until = None if last is None else parse_time(last["as_of"]) + config.retraining.cooldown
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
