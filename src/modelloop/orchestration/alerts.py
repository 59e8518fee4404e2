"""Alerts with a lifecycle: which alerts a monitoring run opens, keeps or resolves.

One alert per (kind, subject) at a time, `subject` being what breached: a feature (`temp`), a
metric (`roc_auc`, `roc_auc@origin=JFK`), a quality check (`missing:temp`). A breach that
persists is the same alert, seen again, not a new one. An alert is open, then perhaps
acknowledged (a person looks into it: it stays unresolved but is not announced again), and
resolves only when a run at the same or a later as-of judged its (kind, subject) clean: the pair
is in `MonitoringResult.judged` and not among the breaches. A run at an earlier as-of never
resolves it, and re-running monitoring at one as-of changes no alert.

Alerts made before subjects existed have an empty subject and stand for their whole kind: they
resolve when a run judged some subject of that kind and found no breach of it.

Opening and resolving queue a webhook event (`modelloop.orchestration.webhooks`); the outbox
is sent later, so no pipeline waits on a receiver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelloop.config import AlertsConfig
from modelloop.errors import UsageError
from modelloop.monitoring.breaches import Breach, BreachKind
from modelloop.monitoring.pipeline import MonitoringResult
from modelloop.orchestration.webhooks import AlertEvent, enqueue
from modelloop.store import MetadataDB
from modelloop.timeutil import parse_time, to_naive


class AlertKind(StrEnum):
    PERFORMANCE = "performance"
    DRIFT = "drift"
    QUALITY = "quality"
    VOLUME = "volume"
    #: A pipeline failed and its retries are used up (subject: the pipeline).
    PIPELINE_FAILED = "pipeline_failed"


class AlertStatus(StrEnum):
    OPEN = "open"
    #: A person looks into it: unresolved, but not announced again.
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


#: The statuses of an alert that still stands.
UNRESOLVED = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)

_ALERT_OF = {
    BreachKind.PERFORMANCE: AlertKind.PERFORMANCE,
    BreachKind.DRIFT: AlertKind.DRIFT,
    BreachKind.QUALITY: AlertKind.QUALITY,
    BreachKind.VOLUME: AlertKind.VOLUME,
}
_MONITORED = frozenset(_ALERT_OF.values())


@dataclass
class AlertChanges:
    opened: list[int] = field(default_factory=list)
    #: Unresolved alerts the run found again: the same condition, not a new alert.
    still_open: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [*self.opened, *self.still_open]


def apply_alerts(
    db: MetadataDB, result: MonitoringResult, alerts: AlertsConfig | None = None
) -> AlertChanges:
    """Open, keep or resolve the alerts of a monitoring run's breaches; with `alerts`, queue a
    webhook event for every alert opened or resolved."""
    changes = AlertChanges()
    as_of = to_naive(result.as_of)
    unresolved = [a for a in db.unresolved_alerts() if a["kind"] in _MONITORED]
    standing = {(str(a["kind"]), str(a["subject"])): a for a in unresolved}
    breached: dict[tuple[str, str], Breach] = {}
    for breach in result.breaches:
        breached.setdefault((str(_ALERT_OF[breach.kind]), breach.subject), breach)

    for (kind, subject), breach in breached.items():
        alert = standing.get((kind, subject))
        if alert is not None:
            db.see_alert(int(alert["id"]), as_of=as_of)
            changes.still_open.append(int(alert["id"]))
            continue
        cleared = db.last_resolved_as_of(kind, subject)
        if cleared is not None and cleared > as_of:
            # A later run already judged it clean: this is the past of a resolved alert.
            continue
        alert_id = db.record_alert(kind, subject=subject, as_of=as_of, detail=_detail(breach, result))
        changes.opened.append(alert_id)

    clean = {(str(_ALERT_OF[k]), s) for k, s in result.judged} - set(breached)
    judged_kinds = {kind for kind, _ in clean}
    breached_kinds = {kind for kind, _ in breached}
    for (kind, subject), alert in standing.items():
        if (kind, subject) in breached:
            continue
        legacy = subject == "" and kind in judged_kinds and kind not in breached_kinds
        if ((kind, subject) in clean or legacy) and db.resolve_alert(int(alert["id"]), as_of=as_of):
            changes.resolved.append(int(alert["id"]))

    if alerts is not None and alerts.webhooks:
        for alert_id in changes.opened:
            enqueue(db, alerts, AlertEvent.OPENED, db.get_alert(alert_id))
        for alert_id in changes.resolved:
            enqueue(db, alerts, AlertEvent.RESOLVED, db.get_alert(alert_id))
    return changes


def _detail(breach: Breach, result: MonitoringResult) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "message": breach.message,
        "metric": result.metric_value,
        "report": str(result.report_html) if result.report_html else None,
    }
    if breach.detail:
        detail["breach"] = breach.detail
    if breach.kind is BreachKind.DRIFT and result.drift is not None:
        detail["drifted"] = result.drift.drifted
        detail["share"] = result.drift.share_drifted
    return detail


def acknowledge(db: MetadataDB, alert_id: int, *, by: str, reason: str) -> dict[str, Any]:
    """A person takes an open alert on: it stays unresolved but is not announced again."""
    if not by.strip():
        raise UsageError("--by: say who acknowledges the alert")
    if not reason.strip():
        raise UsageError("--reason: say why (it is kept with the alert)")
    alert = db.get_alert(alert_id)  # NotFound names the id
    if alert["status"] == AlertStatus.OPEN and db.ack_alert(alert_id, by=by, reason=reason):
        return db.get_alert(alert_id)
    alert = db.get_alert(alert_id)
    if alert["status"] == AlertStatus.ACKNOWLEDGED:
        raise UsageError(
            f"alert {alert_id} was already acknowledged by {alert['acked_by']} at "
            f"{alert['acked_at']}: {alert['ack_reason']}"
        )
    raise UsageError(
        f"alert {alert_id} ({alert['kind']} {alert['subject'] or ''}) is resolved (judged clean "
        f"as of {alert['resolved_as_of']}): only an open alert can be acknowledged"
    )


def failure_alert(
    db: MetadataDB, run: Mapping[str, Any], attempts: int, alerts: AlertsConfig | None = None
) -> int | None:
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
    as_of = parse_time(run["as_of"] or run["started_at"])
    alert_id = db.record_alert(
        AlertKind.PIPELINE_FAILED, subject=str(run["kind"]), as_of=as_of, detail=detail
    )
    if alerts is not None and alerts.webhooks:
        enqueue(db, alerts, AlertEvent.OPENED, db.get_alert(alert_id))
    return alert_id


def describe_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """An alert row as the CLI and `--json` show it."""
    detail = alert.get("detail") or {}
    return {
        "id": alert["id"],
        "kind": alert["kind"],
        "subject": alert.get("subject") or "",
        "status": alert["status"],
        "as_of": alert["as_of"],
        "last_seen_as_of": alert.get("last_seen_as_of") or alert["as_of"],
        "seen": alert.get("seen") or 1,
        "message": detail.get("message"),
        "report": detail.get("report"),
        "acked_by": alert.get("acked_by"),
        "acked_at": alert.get("acked_at"),
        "ack_reason": alert.get("ack_reason"),
        "resolved_as_of": alert.get("resolved_as_of"),
        "resolved_at": alert.get("resolved_at"),
        "created_at": alert.get("created_at"),
        "detail": detail,
    }
