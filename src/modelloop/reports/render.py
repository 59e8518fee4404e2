"""The monitoring report and the demo summary, each one self-contained HTML page.

One file with inline CSS and inline SVG, no scripts, no fonts, no external asset of any kind,
so it can be attached to an alert, stored beside the JSON result and opened offline years
later. Both pages extend `templates/base.html.j2`; every piece of text from the data (feature
names, categories, model names) is escaped by Jinja2's autoescape.

The functions here read a payload (the JSON the pipeline stores) defensively and hand the
templates a view of it: a section that is missing or null is None in the view and left out of
the page, because a report is most needed exactly when something upstream went wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import PurePath
from typing import Any

from modelloop.reports.charts import BarChart, LineChart, bar_chart, line_chart
from modelloop.reports.environment import environment, finite

#: Drifted features that get a full-size bar chart below the drift table (every feature has a
#: small one in its row).
MAX_DRIFT_CHARTS = 6

#: Drift measures a feature row may carry beside the one its method uses.
_MEASURES = ("psi", "jensen_shannon", "wasserstein", "chi2")

_REFERENCE_KINDS = {
    "training": "the training data of the serving version",
    "same_period_last_year": "the same period last year",
    "rolling": "a rolling window of recent traffic",
}


def render_monitoring(payload: Mapping[str, Any]) -> str:
    """The monitoring report page of one monitoring result (the JSON the pipeline stores)."""
    return environment().get_template("monitoring.html.j2").render(report=_monitoring_view(payload))


def render_demo(payload: Mapping[str, Any]) -> str:
    """The demo's summary page: the year's weekly metric, every week, every gate decision.

    The payload: `{"title", "model", "metric", "floor", "direction", "weeks": [{"number",
    "ending", "champion", "metric", "n_labelled", "drifted", "breaches", "decisions",
    "report"}], "decisions": [{"version", "outcome", "as_of", "reasons"}]}`; `report` is the
    week's report file, linked relative to the summary.
    """
    return environment().get_template("demo.html.j2").render(demo=_demo_view(payload))


# -- the monitoring report --------------------------------------------------------------------


def _monitoring_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    metric = _mapping(payload.get("metric"))
    breaches = [_breach(item) for item in _list(payload.get("breaches"))]
    alert = payload.get("alert")
    quality = _optional_mapping(payload.get("quality"))
    return {
        "model": _text(payload.get("model")) or "unknown model",
        "as_of": payload.get("as_of"),
        "window": _optional_mapping(payload.get("window")),
        "n_rows": payload.get("n_rows"),
        "n_labelled": payload.get("n_labelled"),
        "alert": alert if isinstance(alert, bool) else bool(breaches),
        "breaches": breaches,
        "trigger": _optional_mapping(payload.get("trigger")),
        "alerts": _alerts(payload.get("alerts")),
        "reference": _reference(payload.get("reference")),
        "metric": _metric(metric),
        "metrics": _metrics(payload.get("metrics"), metric.get("estimated")),
        "coverage": _optional_mapping(payload.get("coverage")),
        "history": _history_chart(payload, metric),
        "segments": _segments(payload.get("segments")),
        "drift": _drift(payload.get("drift"), _list(payload.get("seasonal"))),
        "quality": _quality(quality) if quality is not None else None,
        "volume": _optional_mapping(_mapping(quality).get("volume")),
        "versions": _versions(payload.get("versions"), payload.get("n_rows")),
    }


def _breach(item: Any) -> dict[str, Any]:
    """A breach as the pipeline writes it now (kind, subject, message) or used to (a string)."""
    if isinstance(item, Mapping):
        return {
            "kind": _text(item.get("kind")),
            "subject": _text(item.get("subject")),
            "message": _text(item.get("message")) or _text(item.get("subject")) or "breach",
        }
    return {"kind": "", "subject": "", "message": _text(item)}


def _alerts(value: Any) -> dict[str, list[str]] | None:
    alerts = _optional_mapping(value)
    if alerts is None:
        return None
    return {key: [_text(i) for i in _list(alerts.get(key))] for key in ("opened", "still_open", "resolved")}


def _reference(value: Any) -> dict[str, Any] | None:
    reference = _optional_mapping(value)
    if reference is None:
        return None
    kind = _text(reference.get("kind"))
    return {
        "kind": kind,
        "described": _REFERENCE_KINDS.get(kind, kind or "unknown"),
        "start": reference.get("start"),
        "end": reference.get("end"),
        "note": _text(reference.get("note")),
    }


def _metric(metric: Mapping[str, Any]) -> dict[str, Any]:
    estimated = _optional_mapping(metric.get("estimated"))
    minimize = metric.get("direction") == "minimize"
    return {
        "name": _text(metric.get("name")) or "metric",
        "value": finite(metric.get("value")),
        "note": _text(metric.get("note")),
        "floor": finite(metric.get("floor")),
        "bound": "ceiling" if minimize else "floor",
        "better": "lower" if minimize else "higher",
        "estimated": None
        if estimated is None or finite(estimated.get("value")) is None
        else {
            "value": finite(estimated.get("value")),
            "method": _text(estimated.get("method")) or "estimate",
            "rows": estimated.get("rows"),
        },
    }


def _metrics(measured: Any, estimated: Any) -> list[tuple[str, float | None, float | None]]:
    """(name, measured on labelled rows, estimated) for every metric either one has."""
    values, guesses = _mapping(measured), _mapping(_mapping(estimated).get("metrics"))
    names = [*values, *(name for name in guesses if name not in values)]
    return [(str(name), finite(values.get(name)), finite(guesses.get(name))) for name in names]


def _history_chart(payload: Mapping[str, Any], metric: Mapping[str, Any]) -> LineChart | None:
    """The metric over the earlier runs and this one; None without earlier runs to compare."""
    history = [item for item in _list(payload.get("history")) if isinstance(item, Mapping)]
    if not history:
        return None
    estimated = _mapping(metric.get("estimated"))
    runs = [
        *((item.get("as_of"), item.get("metric"), item.get("estimated")) for item in history),
        (payload.get("as_of"), metric.get("value"), estimated.get("value")),
    ]
    name = _text(metric.get("name")) or "metric"
    return line_chart(
        [(_short_date(as_of), finite(value)) for as_of, value, _ in runs],
        title=f"{name} by monitoring run",
        floor=finite(metric.get("floor")),
        floor_label="ceiling" if metric.get("direction") == "minimize" else "floor",
        estimated=[finite(guess) for _, _, guess in runs],
    )


def _segments(value: Any) -> list[dict[str, Any]]:
    return [
        {
            "column": _text(item.get("column")),
            "value": _text(item.get("value")),
            "rows": item.get("rows"),
            "labelled": item.get("labelled"),
            "metric": finite(item.get("metric")),
            "estimated": finite(item.get("estimated")),
            "breach": bool(item.get("breach")),
        }
        for item in _list(value)
        if isinstance(item, Mapping)
    ]


def _drift(value: Any, seasonal: Sequence[Any]) -> dict[str, Any] | None:
    drift = _optional_mapping(value)
    if drift is None:
        return None
    threshold = finite(drift.get("threshold"))
    not_counted = {str(name) for name in seasonal}
    ignored = {str(name) for name in _list(drift.get("ignored"))}
    features = [
        _drift_row(item, threshold, not_counted, ignored)
        for item in _list(drift.get("features"))
        if isinstance(item, Mapping)
    ]
    # What raised the alert first, then what drifted without counting, then the rest; each by size.
    features.sort(key=lambda row: (row["status"] != "drifted", not row["drifted"], row["greyed"],
                                   -(row["value"] or 0.0)))
    counted = [row for row in features if row["counted"] and not row["ignored"]]
    drifted = [row for row in counted if row["drifted"]]
    prediction = _optional_mapping(drift.get("prediction"))
    charted = [row for row in features if row["drifted"] and not row["ignored"]][:MAX_DRIFT_CHARTS]
    return {
        "threshold": threshold,
        "n_rows": drift.get("n_rows"),
        "features": features,
        "counted": len(counted),
        "drifted": len(drifted),
        "share_drifted": len(drifted) / len(counted) if counted else None,
        "methods": sorted({row["method"] for row in features}),
        "charts": [_big_chart(row) for row in charted],
        "prediction": None if prediction is None else _drift_row(prediction, threshold, set(), set()),
    }


def _drift_row(
    item: Mapping[str, Any], threshold: float | None, not_counted: set[str], ignored_names: set[str]
) -> dict[str, Any]:
    feature = _text(item.get("feature")) or "prediction"
    method = _text(item.get("method")) or "psi"
    value = finite(item.get("value"))
    if value is None and method in _MEASURES:
        value = finite(item.get(method))
    ignored = bool(item.get("ignored")) or feature in ignored_names
    counted = item.get("counted")
    counted = (feature not in not_counted) if counted is None else bool(counted)
    drifted = bool(item.get("drifted"))
    status = "ignored" if ignored else "drifted" if drifted and counted else (
        "drifted, not counted" if drifted else "not counted" if not counted else "")
    labels = [_text(label) for label in _list(item.get("labels"))]
    reference = [finite(v) for v in _list(item.get("reference_shares"))]
    current = [finite(v) for v in _list(item.get("current_shares"))]
    return {
        "feature": feature,
        "kind": _text(item.get("kind")),
        "method": method,
        "value": value,
        "threshold": finite(item.get("threshold")) if item.get("threshold") is not None else threshold,
        "threshold_source": _text(item.get("threshold_source")),
        "psi": finite(item.get("psi")),
        "jensen_shannon": finite(item.get("jensen_shannon")),
        "wasserstein": finite(item.get("wasserstein")),
        "chi2": finite(item.get("chi2")),
        "n": item.get("n"),
        "drifted": drifted,
        "ignored": ignored,
        "counted": counted,
        "status": status,
        "greyed": ignored or not counted,
        "bins": (labels, reference, current),
        "small_chart": bar_chart(
            labels, reference, current, title=f"{feature}: reference vs current share per bin", small=True
        )
        if labels
        else None,
    }


def _big_chart(row: Mapping[str, Any]) -> BarChart:
    labels, reference, current = row["bins"]
    value = "n/a" if row["value"] is None else f"{row['value']:.3f}"
    aside = "" if row["counted"] else " (not counted)"
    return bar_chart(
        labels, reference, current, title=f"{row['feature']}: {row['method']} {value}{aside}"
    )


def _quality(quality: Mapping[str, Any]) -> dict[str, Any]:
    missing: list[dict[str, Any]] = []
    for name, item in _mapping(quality.get("missing")).items():
        entry = item if isinstance(item, Mapping) else {"share": item}
        share, reference = finite(entry.get("share")), finite(entry.get("reference_share"))
        if (share or 0.0) > 0 or (reference or 0.0) > 0:
            missing.append({"feature": str(name), "share": share, "reference_share": reference})
    missing.sort(key=lambda row: -(row["share"] or 0.0))
    out_of_range = [
        {
            "feature": str(name),
            "count": item.get("count"),
            "share": item.get("share"),
            "min_seen": item.get("min_seen"),
            "max_seen": item.get("max_seen"),
            "reference_min": item.get("reference_min"),
            "reference_max": item.get("reference_max"),
        }
        for name, item in _entries(quality.get("out_of_range"))
    ]
    unseen = [
        {
            "feature": str(name),
            "count": item.get("count"),
            "share": item.get("share"),
            "examples": ", ".join(_text(v) for v in _list(item.get("values"))),
        }
        for name, item in _entries(quality.get("unseen_categories"))
    ]
    contract = [
        {
            "feature": str(name),
            "count": item.get("count"),
            "share": item.get("share"),
            "rule": _text(item.get("rule")),
        }
        for name, item in _entries(quality.get("contract"))
    ]
    return {
        "n_rows": quality.get("n_rows"),
        "missing": missing,
        "out_of_range": out_of_range,
        "unseen": unseen,
        "contract": contract,
        "any": bool(missing or out_of_range or unseen or contract),
    }


def _versions(value: Any, n_rows: Any) -> list[dict[str, Any]]:
    total = finite(n_rows)
    return [
        {
            "version": str(version),
            "rows": rows,
            "share": None if not total or finite(rows) is None else (finite(rows) or 0.0) / total,
        }
        for version, rows in _mapping(value).items()
    ]


# -- the demo summary -------------------------------------------------------------------------


def _demo_view(payload: Mapping[str, Any]) -> dict[str, Any]:
    weeks = [item for item in _list(payload.get("weeks")) if isinstance(item, Mapping)]
    metric = _text(payload.get("metric")) or "metric"
    minimize = payload.get("direction") == "minimize"
    chart = (
        line_chart(
            [(_short_date(week.get("ending")), finite(week.get("metric"))) for week in weeks],
            title=f"weekly {metric} of the serving champion",
            floor=finite(payload.get("floor")),
            floor_label="ceiling" if minimize else "floor",
        )
        if weeks
        else None
    )
    return {
        "title": _text(payload.get("title")) or _text(payload.get("model")) or "modelloop demo",
        "model": _text(payload.get("model")),
        "metric": metric,
        "floor": finite(payload.get("floor")),
        "bound": "ceiling" if minimize else "floor",
        "chart": chart,
        "weeks": [
            {
                "number": week.get("number"),
                "ending": week.get("ending"),
                "champion": _text(week.get("champion")),
                "metric": finite(week.get("metric")),
                "n_labelled": week.get("n_labelled"),
                "drifted": [_text(name) for name in _list(week.get("drifted"))],
                "breaches": [_breach(item) for item in _list(week.get("breaches"))],
                "decisions": [_text(item) for item in _list(week.get("decisions"))],
                "report": _report_link(week.get("report")),
            }
            for week in weeks
        ],
        "decisions": [
            {
                "version": _text(item.get("version")),
                "outcome": _text(item.get("outcome")),
                "as_of": item.get("as_of"),
                "reasons": [_text(reason) for reason in _list(item.get("reasons"))],
            }
            for item in _list(payload.get("decisions"))
            if isinstance(item, Mapping)
        ],
    }


# -- reading a payload defensively ------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _optional_mapping(value: Any) -> Mapping[str, Any] | None:
    """A section: None when it is absent, null or empty, so the template leaves it out."""
    return value if isinstance(value, Mapping) and value else None


def _entries(value: Any) -> list[tuple[str, Mapping[str, Any]]]:
    return [(str(name), item) for name, item in _mapping(value).items() if isinstance(item, Mapping)]


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _report_link(value: Any) -> str:
    """A week's report as a link relative to the summary beside it: a bare file name, never a
    path or a URL (a `javascript:` or `http:` link in a payload must not become a link)."""
    name = PurePath(_text(value)).name
    return "" if ":" in name or name in ("", ".", "..") else name


def _short_date(value: Any) -> str:
    """An x-axis label: `Mar 08` from an ISO timestamp, or the text as it is."""
    try:
        return f"{datetime.fromisoformat(str(value)):%b %d}"
    except ValueError:
        return _text(value)
