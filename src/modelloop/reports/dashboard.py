"""The dashboard page (`GET /ui`): the loop of one model on one page, from the payload
`modelloop.serving.dashboard` reads, with the same base template, styles and SVG charts as the
reports.

Like the reports it has no script and loads nothing: charts are inline SVG, the forms post
without JavaScript. Unlike them it is served, so its links are the server's own paths
(`/ui/...`) and, when the project names one, the MLflow UI's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelloop.reports.charts import HeatMap, LineChart, heat_map, line_chart
from modelloop.reports.environment import environment, finite
from modelloop.reports.render import _list, _mapping, _short_date, _text

#: What a finished action says on the page it returns to (`?done=<key>`): fixed words, so a
#: crafted link cannot make the page say anything else.
DONE = {
    "approved": "Approved: the version is the champion now.",
    "rejected": "Rejected: the version will not serve.",
    "rolled_back": "Rolled back: the version named in the history serves again.",
    "acknowledged": "Alert acknowledged.",
    "queued": "Pipeline run queued: it shows in the run ledger below once it starts.",
    "joined": "A run of that pipeline was already waiting: this request joined it.",
    "signed_in": "Signed in.",
    "signed_out": "Signed out.",
}


#: The delivery metrics the page shows (see `modelloop.gate.delivery`).
_DELIVERY = ("promotions", "since", "deployment_frequency_per_week", "lead_time_hours_median",
             "lead_time_hours_p90", "lead_times_measured", "change_failure_rate",
             "promotions_rolled_back", "time_to_restore_hours_median")


def render_dashboard(
    payload: Mapping[str, Any],
    *,
    session: Mapping[str, Any] | None = None,
    can_sign_in: bool = True,
    done: str | None = None,
) -> str:
    """The whole page. `session` is `{"who", "csrf"}` when signed in (the actions show);
    `can_sign_in` is False when the server has no token (read-only, and says why)."""
    view = dashboard_view(payload)
    return environment().get_template("dashboard.html.j2").render(
        d=view, session=session, can_sign_in=can_sign_in, done=DONE.get(done or "")
    )


def render_ui_message(title: str, message: str, *, status: int, sign_in: bool = False) -> str:
    """A short page for a refusal or a failure of an action: what happened and a way back."""
    return environment().get_template("ui_message.html.j2").render(
        title=title, message=message, status=status, sign_in=sign_in
    )


def render_sign_in(model: str, *, error: str | None = None, who: str = "") -> str:
    """The sign-in form: a name (recorded as `by`) and the server's token."""
    return environment().get_template("ui_signin.html.j2").render(model=model, error=error, who=who)


def dashboard_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    windows = [w for w in _list(payload.get("monitoring")) if isinstance(w, Mapping)]
    alerts = [a for a in _list(payload.get("alerts")) if isinstance(a, Mapping)]
    return {
        "model": _text(payload.get("model")) or "unknown model",
        "metric": _text(payload.get("metric")) or "metric",
        "direction": payload.get("direction"),
        "bound": "ceiling" if payload.get("direction") == "minimize" else "floor",
        "performance_floor": finite(payload.get("performance_floor")),
        "gate_floor": finite(payload.get("gate_floor")),
        "approval": _text(payload.get("approval")),
        "mlflow_url": _text(payload.get("mlflow_url")),
        "roles": [
            (role, _version(found) if isinstance(found := payload.get(role), Mapping) else None)
            for role in ("champion", "challenger", "previous")
        ],
        "versions": [_version(v) for v in _list(payload.get("versions")) if isinstance(v, Mapping)],
        "pending": _list(payload.get("pending")),
        "events": [_event(e) for e in _list(payload.get("events")) if isinstance(e, Mapping)],
        "windows": [_window(w) for w in reversed(windows)],
        "performance": _performance_chart(payload, windows),
        "coverage": _coverage_chart(windows),
        "heat": _heat(windows),
        "alerts": {
            status: [_row(a, _ALERT) for a in alerts if a.get("status") == status]
            for status in ("open", "acknowledged", "resolved")
        },
        "runs": [_row(r, _RUN) | {"produced": _mapping(r.get("produced"))}
                 for r in _list(payload.get("runs")) if isinstance(r, Mapping)],
        "runtime": payload.get("runtime"),
        "pipelines": _list(payload.get("pipelines")),
        "delivery": {key: _mapping(payload.get("delivery")).get(key) for key in _DELIVERY},
    }


_VERSION = ("version", "status", "trigger", "trained_as_of", "holdout_score", "refit_of",
            "description", "created_at", "run_id", "mlflow_version_url", "mlflow_run_url")
_WINDOW = ("id", "as_of", "n_rows", "n_labelled", "coverage", "metric", "champion", "has_report")
_ALERT = ("id", "kind", "subject", "status", "as_of", "last_seen_as_of", "seen", "message",
          "acked_by", "ack_reason", "resolved_as_of")
_RUN = ("id", "pipeline", "status", "origin", "trigger", "attempt", "retry_of", "started_at",
        "finished_at", "as_of", "error")
_REPLAY = ("start", "end", "rows", "candidate", "champion", "verdict")
_QUALITY = ("missing", "out_of_range", "unseen", "contract")


def _row(item: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The keys the template reads, each present (None when the payload lacks it): a missing
    value renders as n/a rather than failing the page."""
    return {key: item.get(key) for key in keys}


def _version(item: Mapping[str, Any]) -> dict[str, Any]:
    return _row(item, _VERSION) | {
        "aliases": [_text(a) for a in _list(item.get("aliases"))],
        "window": _row(_mapping(item.get("window")), ("train_start", "train_end")),
    }


def _window(item: Mapping[str, Any]) -> dict[str, Any]:
    return _row(item, _WINDOW) | {
        "drifted": [_text(name) for name in _list(item.get("drifted"))],
        "quality": _row(_mapping(item.get("quality")), _QUALITY),
        "breaches": _by_kind([_mapping(b) for b in _list(item.get("breaches"))]),
    }


def _by_kind(breaches: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A window's breaches, one entry per kind naming its subjects (the messages on hover): a
    table cell stays short when ten features drift at once."""
    kinds: dict[str, dict[str, Any]] = {}
    for breach in breaches:
        kind = _text(breach.get("kind")) or "breach"
        entry = kinds.setdefault(kind, {"kind": kind, "subjects": [], "messages": []})
        if breach.get("subject"):
            entry["subjects"].append(_text(breach.get("subject")))
        entry["messages"].append(_text(breach.get("message")))
    return [entry | {"message": "\n".join(entry["messages"])} for entry in kinds.values()]


def _event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A history event with its evidence split into what a person reads: the holdout scores,
    the replay table, the validity checks; the rest as key/value lines."""
    evidence = _mapping(event.get("evidence"))
    replay = _mapping(evidence.get("replay"))
    holdout = _mapping(evidence.get("holdout"))
    return {
        "at": event.get("at"),
        "action": _text(event.get("action")),
        "version": event.get("version"),
        "from_version": event.get("from_version"),
        "by": _text(event.get("by")),
        "reason": _text(event.get("reason")),
        "as_of": event.get("as_of"),
        "scores": {
            "metric": _text(evidence.get("metric")),
            "candidate": finite(evidence.get("candidate")),
            "champion": finite(evidence.get("champion")),
            "champion_version": evidence.get("champion_version"),
        }
        if "candidate" in evidence
        else None,
        "holdout": _row(holdout, ("start", "end", "rows")) if holdout else None,
        "replay": {
            "passed": bool(replay.get("passed")),
            "reason": _text(replay.get("reason")),
            "windows": [_row(w, _REPLAY) for w in _list(replay.get("windows")) if isinstance(w, Mapping)],
        }
        if replay
        else None,
        "validity": [_row(c, ("name", "passed", "detail")) for c in _list(evidence.get("validity"))
                     if isinstance(c, Mapping)],
        "other": {
            key: value
            for key, value in evidence.items()
            if key not in ("metric", "candidate", "champion", "champion_version", "holdout",
                           "replay", "validity")
            and not isinstance(value, (Mapping, list))
        },
    }


def _performance_chart(payload: Mapping[str, Any], windows: Sequence[Mapping[str, Any]]) -> LineChart:
    marks: list[tuple[int, str]] = []
    before = None
    for i, window in enumerate(windows):
        champion = window.get("champion")
        if champion is not None and before is not None and champion != before:
            marks.append((i, f"v{champion}"))
        before = champion if champion is not None else before
    metric = _text(payload.get("metric")) or "metric"
    return line_chart(
        [(_short_date(w.get("as_of")), finite(w.get("metric"))) for w in windows],
        title=f"{metric} per monitoring window (new champion marked)",
        floor=finite(payload.get("performance_floor")),
        floor_label="ceiling" if payload.get("direction") == "minimize" else "floor",
        estimated=[finite(w.get("estimated")) for w in windows],
        marks=marks,
        width=1000,
    )


def _coverage_chart(windows: Sequence[Mapping[str, Any]]) -> LineChart:
    return line_chart(
        [(_short_date(w.get("as_of")), finite(w.get("coverage"))) for w in windows],
        title="label coverage per monitoring window (share of rows old enough to be labelled)",
        width=1000,
        height=200,
    )


def _heat(windows: Sequence[Mapping[str, Any]]) -> HeatMap:
    features: list[str] = []
    for window in windows:
        for item in _list(window.get("drift")):
            name = _text(_mapping(item).get("feature"))
            if name and name not in features:
                features.append(name)
    values: list[list[float | None]] = []
    tips: list[list[str]] = []
    flagged: list[list[bool]] = []
    for name in features:
        row_values: list[float | None] = []
        row_tips: list[str] = []
        row_flags: list[bool] = []
        for window in windows:
            found = next((_mapping(i) for i in _list(window.get("drift"))
                          if _text(_mapping(i).get("feature")) == name), None)
            date = _short_date(window.get("as_of"))
            if found is None:
                row_values.append(None)
                row_tips.append(f"{name}, window ending {date}: not measured")
                row_flags.append(False)
                continue
            value, threshold = finite(found.get("value")), finite(found.get("threshold"))
            row_values.append(value / threshold if value is not None and threshold else None)
            drifted = bool(found.get("drifted"))
            row_tips.append(
                f"{name}, window ending {date}: {_text(found.get('method'))} "
                f"{'n/a' if value is None else f'{value:.3f}'}"
                f"{'' if threshold is None else f' (threshold {threshold:.3f})'}"
                f"{', drifted' if drifted else ''}"
            )
            row_flags.append(drifted)
        values.append(row_values)
        tips.append(row_tips)
        flagged.append(row_flags)
    return heat_map(
        features,
        [_short_date(w.get("as_of")) for w in windows],
        values,
        title="drift per feature and window (value / threshold; outlined: drifted; click: report)",
        tips=tips,
        flagged=flagged,
        links=[f"/ui/reports/{w.get('id')}" if w.get("has_report") else "" for w in windows],
        # A few windows get big cells, two years of weeks small ones: about 720px either way.
        cell=max(12.0, min(36.0, 720 / max(len(windows), 1))),
    )
