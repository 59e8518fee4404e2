"""What the dashboard shows, read through `Project`: a JSON-ready payload that
`modelloop.reports.render_dashboard` turns into the page.

Everything here reads; nothing writes or takes the promotion lock, so a page never waits for a
gate that is running, and a page is as cheap as a handful of queries: one listing of the
registry's versions, the recorded decisions, the alerts, the run ledger and the monitoring runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from modelloop.config import PIPELINES

if TYPE_CHECKING:
    from modelloop.project import Project
    from modelloop.registry import ModelVersion

#: How many monitoring windows the charts and the heat map cover (two years of weekly runs).
WINDOWS = 104
#: How many versions, events, alerts and runs the tables list.
ROWS = 60

ROLES = ("champion", "challenger", "previous")
_WINDOW_TAGS = ("train_start", "train_end", "holdout_start", "holdout_end")


def dashboard_payload(project: Project, *, runtime: Mapping[str, Any] | None) -> dict[str, Any]:
    """The page's data. `runtime` is `Runtime.status()` under `modelloop up`, else None."""
    config = project.config
    mlflow_url = config.ui.mlflow_url
    versions = sorted(project.registry.versions(project.name), key=lambda v: -v.version)
    described = [_version(v, project.name, mlflow_url) for v in versions]
    # The aliases as the model's alias map holds them (a version listing may leave them out).
    by_alias: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        found = project.registry.alias(project.name, role)
        row = next((r for r in described if found and r["version"] == found.version), None)
        if row is not None:
            by_alias[role] = row
    for row in described:
        row["aliases"] = [role for role in ROLES if by_alias.get(role) is row]
    monitoring = _windows(project.monitoring_history(limit=WINDOWS))
    return {
        "model": project.name,
        "task": config.task,
        "metric": config.evaluation.metric,
        "direction": "maximize" if config.maximize else "minimize",
        "performance_floor": config.monitoring.performance_floor,
        "gate_floor": config.gate.floor,
        "approval": config.gate.approval,
        "mlflow_url": mlflow_url,
        "champion": by_alias.get("champion"),
        "challenger": by_alias.get("challenger"),
        "previous": by_alias.get("previous"),
        "versions": described[:ROWS],
        "pending": [row["version"] for row in described if row["status"] == "pending_approval"],
        "events": project.history(ROWS, reconcile=False),
        "monitoring": monitoring,
        "alerts": project.alerts(status=None, limit=ROWS),
        "runs": project.runs(limit=ROWS),
        "runtime": dict(runtime) if runtime is not None else None,
        "pipelines": list(PIPELINES) if runtime is not None else [],
        "delivery": project.delivery(),
    }


def _version(version: ModelVersion, name: str, mlflow_url: str | None) -> dict[str, Any]:
    tags = version.tags
    return {
        "version": version.version,
        "status": version.status,
        "aliases": list(version.aliases),
        "trigger": tags.get("modelloop.trigger"),
        "trained_as_of": tags.get("modelloop.as_of"),
        "window": {key: tags.get(f"modelloop.window.{key}") for key in _WINDOW_TAGS},
        "holdout_score": tags.get("modelloop.gate.candidate_score"),
        "refit_of": tags.get("modelloop.refit_of"),
        "description": version.description,
        "created_at": version.created_at.isoformat() if version.created_at else None,
        "run_id": version.run_id,
        "mlflow_version_url": (
            f"{mlflow_url}/#/models/{quote(name, safe='')}/versions/{version.version}"
            if mlflow_url
            else None
        ),
        "mlflow_run_url": (
            f"{mlflow_url}/#/runs/{quote(version.run_id, safe='')}"
            if mlflow_url and version.run_id
            else None
        ),
    }


def _windows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per monitored as-of (the latest run of it), oldest first."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        result = row.get("result")
        if isinstance(result, Mapping) and result.get("as_of"):
            latest[str(result["as_of"])] = {"id": row["id"], "result": result}
    return [_window(found["id"], found["result"]) for _, found in sorted(latest.items())]


def _window(run_id: int, result: Mapping[str, Any]) -> dict[str, Any]:
    metric = result.get("metric") or {}
    estimated = metric.get("estimated") or {}
    drift = result.get("drift") or {}
    quality = result.get("quality") or {}
    served = {str(k): v for k, v in (result.get("versions") or {}).items()}
    return {
        "id": run_id,
        "as_of": result.get("as_of"),
        "window": result.get("window"),
        "n_rows": result.get("n_rows"),
        "n_labelled": result.get("n_labelled"),
        "coverage": (result.get("coverage") or {}).get("share"),
        "metric": metric.get("value"),
        "estimated": estimated.get("value") if isinstance(estimated, Mapping) else None,
        "served": served,
        "champion": max(served, key=lambda v: served[v] or 0) if served else None,
        "drift": [
            {
                "feature": item.get("feature"),
                "method": item.get("method") or "psi",
                "value": item.get("value") if item.get("value") is not None else item.get("psi"),
                "threshold": item.get("threshold") or drift.get("threshold"),
                "drifted": bool(item.get("drifted")),
                "counted": item.get("counted", True),
            }
            for item in drift.get("features") or []
            if isinstance(item, Mapping)
        ],
        "drifted": list(drift.get("drifted") or []),
        "quality": {
            "missing": sum(
                1
                for item in (quality.get("missing") or {}).values()
                if ((item.get("share") if isinstance(item, Mapping) else item) or 0) > 0
            ),
            "out_of_range": len(quality.get("out_of_range") or {}),
            "unseen": len(quality.get("unseen_categories") or {}),
            "contract": len(quality.get("contract") or {}),
        },
        "breaches": [
            {"kind": b.get("kind"), "subject": b.get("subject"), "message": b.get("message")}
            for b in result.get("breaches") or []
            if isinstance(b, Mapping)
        ],
        "has_report": bool(result.get("report_html")),
    }
