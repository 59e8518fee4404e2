"""The monitoring report as one self-contained HTML page, and the SVG charts it draws.

One file with inline CSS and SVG, no scripts and no external assets, so it can be attached to an
alert, stored next to the JSON result, and opened offline years later. Every piece of text comes
from data (feature names, categories, model names) and is escaped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

#: Drifted features that get a bar chart; the table lists them all.
MAX_DRIFT_CHARTS = 6

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 980px; color: #1f2933; line-height: 1.4; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d9e2ec; }
.meta { color: #52606d; }
.verdict { display: inline-block; padding: .2rem .6rem; border-radius: 4px; font-weight: 600; }
.verdict.alert { background: #fde8e8; color: #9b1c1c; }
.verdict.ok { background: #e3f9e5; color: #1f6f3a; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .92rem; }
th, td { text-align: left; padding: .25rem .75rem; border-bottom: 1px solid #e4e7eb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.drifted td { background: #fff4e5; font-weight: 600; }
.chart { margin: 1rem 0; }
.muted { color: #7b8794; }
"""

_REFERENCE_COLOUR = "#9aa5b1"
_CURRENT_COLOUR = "#e8590c"
_LINE_COLOUR = "#1c7ed6"


def render_html(report: Mapping[str, Any]) -> str:
    """Render a monitoring result (the dict the monitoring pipeline stores) as an HTML page.

    Missing keys and None values render as "n/a" or an empty section rather than failing: a
    report is most needed exactly when something upstream went wrong.
    """
    model = _text(report.get("model"), "unknown model")
    body = [
        _headline(report, model),
        _performance(report),
        _drift(_mapping(report.get("drift"))),
        _quality(_mapping(report.get("quality"))),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Monitoring report: {escape(model)}</title>\n<style>{_CSS}</style>\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def svg_line_chart(
    points: Sequence[tuple[str, float | None]],
    *,
    title: str,
    floor: float | None = None,
    floor_label: str = "floor",
    width: int = 720,
    height: int = 240,
) -> str:
    """Draw an inline SVG line chart; a None value leaves a gap instead of a misleading line.

    Args:
        points: (x label, value) pairs in order, e.g. one per week.
        title: Shown above the chart and as the SVG's accessible title.
        floor: Drawn as a dashed line, e.g. the metric floor that triggers retraining.
        floor_label: What the line is called: "ceiling" for an error metric.
        width: Width in pixels.
        height: Height in pixels.
    """
    left, right, top, bottom = 56, 16, 28, 44
    plot_w, plot_h = max(width - left - right, 1), max(height - top - bottom, 1)
    values = [_finite(value) for _, value in points]
    known = [v for v in values if v is not None]
    floor_value = _finite(floor)
    span_values = known + ([floor_value] if floor_value is not None else [])
    low, high, ticks, decimals = _axis(span_values)

    def x_of(i: int) -> float:
        if len(points) <= 1:
            return left + plot_w / 2
        return left + plot_w * i / (len(points) - 1)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    parts = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
    ]
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e4e7eb"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.{decimals}f}</text>'
        )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#52606d"/>'
    )
    step = max(1, math.ceil(len(points) / 12))
    for i, (label, _) in enumerate(points):
        if i % step == 0 or i == len(points) - 1:
            x = x_of(i)
            parts.append(
                f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" '
                'stroke="#52606d"/>'
            )
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
                f"{escape(str(label))}</text>"
            )
    if floor_value is not None:
        y = y_of(floor_value)
        parts.append(
            f'<line class="floor" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            'stroke="#c92a2a" stroke-dasharray="6 4"/>'
        )
        parts.append(
            f'<text x="{left + plot_w}" y="{y - 4:.1f}" text-anchor="end" fill="#c92a2a">'
            f"{escape(floor_label)} {floor_value:.{decimals + 1}f}</text>"
        )
    for segment in _segments(values):
        coords = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in segment)
        if len(segment) > 1:
            parts.append(
                f'<polyline class="series" points="{coords}" fill="none" '
                f'stroke="{_LINE_COLOUR}" stroke-width="2"/>'
            )
    for i, v in enumerate(values):
        if v is not None:
            parts.append(
                f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="3" fill="{_LINE_COLOUR}">'
                f"<title>{escape(str(points[i][0]))}: {v:.4g}</title></circle>"
            )
    if not known:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
            'fill="#7b8794">no data</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _headline(report: Mapping[str, Any], model: str) -> str:
    window = _mapping(report.get("window"))
    alert = bool(report.get("alert"))
    css, word = ("alert", "ALERT") if alert else ("ok", "OK")
    verdict = f'<span class="verdict {css}">{word}</span>'
    breaches = [str(item) for item in report.get("breaches") or []]
    lines = [
        f"<h1>{escape(model)} {verdict}</h1>",
        f'<p class="meta">Window {_cell(window.get("start"))} to {_cell(window.get("end"))}'
        f" · as of {_cell(report.get('as_of'))} · {_cell(report.get('n_rows'))} rows scored</p>",
    ]
    if breaches:
        items = "".join(f"<li>{escape(item)}</li>" for item in breaches)
        lines.append(f'<p>Breaches:</p><ul class="breaches">{items}</ul>')
    else:
        lines.append("<p>No breaches.</p>")
    trigger = report.get("trigger")
    if isinstance(trigger, Mapping) and trigger:
        rows = "".join(
            f"<tr><th>{escape(str(key))}</th><td>{_cell(value)}</td></tr>"
            for key, value in trigger.items()
        )
        lines.append(f'<p>Retraining trigger:</p><table class="trigger">{rows}</table>')
    versions = _mapping(report.get("versions"))
    if versions:
        rows = "".join(
            f'<tr><td>{escape(str(version))}</td><td class="num">{_cell(count)}</td></tr>'
            for version, count in versions.items()
        )
        lines.append(
            '<table class="versions"><tr><th>Model version</th><th class="num">Rows</th></tr>'
            f"{rows}</table>"
        )
    return "<header>\n" + "\n".join(lines) + "\n</header>"


def _performance(report: Mapping[str, Any]) -> str:
    metric = _mapping(report.get("metric"))
    name = _text(metric.get("name"), "metric")
    value, floor = _finite(metric.get("value")), _finite(metric.get("floor"))
    note = _text(metric.get("note"), "no value")
    shown = f"n/a ({note})" if value is None else f"{value:.4f}"
    floor_text = "none" if floor is None else f"{floor:.4f}"
    bound = "Ceiling" if metric.get("direction") == "minimize" else "Floor"
    return (
        '<section>\n<h2>Performance</h2>\n<table class="performance">'
        f'<tr><th>{escape(name)}</th><td class="num">{escape(shown)}</td></tr>'
        f'<tr><th>{bound}</th><td class="num">{escape(floor_text)}</td></tr>'
        f'<tr><th>Labelled rows</th><td class="num">{_cell(report.get("n_labelled"))}</td></tr>'
        "</table>\n</section>"
    )


def _drift(drift: Mapping[str, Any]) -> str:
    features = [item for item in drift.get("features") or [] if isinstance(item, Mapping)]
    features.sort(key=lambda item: -(_finite(item.get("psi")) or 0.0))
    threshold = _finite(drift.get("threshold"))
    heading = "<h2>Feature drift</h2>"
    if not features:
        return f'<section>\n{heading}\n<p class="muted">No features were checked.</p>\n</section>'
    drifted = [item for item in features if item.get("drifted")]
    summary = (
        f"<p>{len(drifted)} of {len(features)} features drifted"
        + (f" (PSI above {threshold:.3g})" if threshold is not None else "")
        + ".</p>"
    )
    rows = []
    for item in features:
        css = ' class="drifted"' if item.get("drifted") else ""
        psi = _finite(item.get("psi"))
        rows.append(
            f"<tr{css}><td>{_cell(item.get('feature'))}</td><td>{_cell(item.get('kind'))}</td>"
            f'<td class="num">{"n/a" if psi is None else f"{psi:.3f}"}</td>'
            f'<td class="num">{_cell(item.get("n"))}</td>'
            f"<td>{'drifted' if item.get('drifted') else ''}</td></tr>"
        )
    table = (
        '<table class="drift"><tr><th>Feature</th><th>Kind</th><th class="num">PSI</th>'
        '<th class="num">Rows</th><th></th></tr>' + "".join(rows) + "</table>"
    )
    charts = [
        _svg_bar_chart(
            [str(label) for label in item.get("labels") or []],
            [_finite(v) or 0.0 for v in item.get("reference_shares") or []],
            [_finite(v) or 0.0 for v in item.get("current_shares") or []],
            title=f"{item.get('feature')}: PSI {_finite(item.get('psi')) or 0.0:.3f}",
        )
        for item in drifted[:MAX_DRIFT_CHARTS]
    ]
    return "<section>\n" + "\n".join([heading, summary, table, *charts]) + "\n</section>"


def _quality(quality: Mapping[str, Any]) -> str:
    parts = ["<h2>Data quality</h2>"]
    out_of_range = _mapping(quality.get("out_of_range"))
    if out_of_range:
        rows = "".join(
            f'<tr><td>{escape(str(name))}</td><td class="num">{_cell(f.get("count"))}</td>'
            f'<td class="num">{_percent(f.get("share"))}</td>'
            f'<td class="num">{_cell(f.get("min_seen"))} to {_cell(f.get("max_seen"))}</td>'
            f'<td class="num">{_cell(f.get("reference_min"))} to '
            f"{_cell(f.get('reference_max'))}</td></tr>"
            for name, f in ((n, _mapping(v)) for n, v in out_of_range.items())
        )
        parts.append(
            '<h3>Out of the training range</h3><table class="out-of-range"><tr><th>Feature</th>'
            '<th class="num">Rows</th><th class="num">Share</th><th class="num">Seen</th>'
            f'<th class="num">Training range</th></tr>{rows}</table>'
        )
    unseen = _mapping(quality.get("unseen_categories"))
    if unseen:
        rows = "".join(
            f'<tr><td>{escape(str(name))}</td><td class="num">{_cell(f.get("count"))}</td>'
            f'<td class="num">{_percent(f.get("share"))}</td>'
            f"<td>{escape(', '.join(str(v) for v in f.get('values') or []))}</td></tr>"
            for name, f in ((n, _mapping(v)) for n, v in unseen.items())
        )
        parts.append(
            '<h3>Categories never seen in training</h3><table class="unseen"><tr><th>Feature</th>'
            '<th class="num">Rows</th><th class="num">Share</th><th>Most frequent</th></tr>'
            f"{rows}</table>"
        )
    missing = {
        name: share
        for name, share in _mapping(quality.get("missing")).items()
        if (_finite(share) or 0.0) > 0
    }
    if missing:
        rows = "".join(
            f'<tr><td>{escape(str(name))}</td><td class="num">{_percent(share)}</td></tr>'
            for name, share in sorted(missing.items(), key=lambda kv: -(_finite(kv[1]) or 0.0))
        )
        parts.append(
            '<h3>Missing values</h3><table class="missing"><tr><th>Feature</th>'
            f'<th class="num">Missing</th></tr>{rows}</table>'
        )
    if len(parts) == 1:
        parts.append('<p class="muted">No data-quality findings.</p>')
    return "<section>\n" + "\n".join(parts) + "\n</section>"


def _svg_bar_chart(
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    title: str,
) -> str:
    """Grouped bars of reference vs current share per bin: where the mass moved, at a glance."""
    n = min(len(labels), len(reference), len(current))
    left, right, top, bottom = 64, 16, 40, 90
    group = 44
    width = max(360, left + right + group * max(n, 1))
    height = 300
    plot_h = height - top - bottom
    high = max([*reference[:n], *current[:n], 0.0]) or 1.0
    high = min(1.0, math.ceil(high * 10) / 10) if high > 0.1 else math.ceil(high * 100) / 100
    bar = (group - 8) / 2
    parts = [
        f'<svg class="chart bars" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
        f'<rect x="{left}" y="24" width="10" height="10" fill="{_REFERENCE_COLOUR}"/>'
        f'<text x="{left + 14}" y="33">reference</text>'
        f'<rect x="{left + 90}" y="24" width="10" height="10" fill="{_CURRENT_COLOUR}"/>'
        f'<text x="{left + 104}" y="33">current</text>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{fraction * high:.{0 if high >= 0.1 else 1}%}</text>"
        )
    for i in range(n):
        x0 = left + group * i + 4
        pair = (
            (reference[i], _REFERENCE_COLOUR, "reference"),
            (current[i], _CURRENT_COLOUR, "current"),
        )
        for j, (share, colour, name) in enumerate(pair):
            h = plot_h * min(max(share, 0.0), high) / high
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(labels[i])} {name}: '
                f"{share:.1%}</title></rect>"
            )
        cx, cy = x0 + bar, top + plot_h + 12
        parts.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
            f'transform="rotate(-40 {cx:.1f} {cy:.1f})">{escape(_shorten(labels[i]))}</text>'
        )
    parts.append("</svg>")
    return '<div class="chart">' + "\n".join(parts) + "</div>"


def _axis(values: Sequence[float]) -> tuple[float, float, list[float], int]:
    """A y range padded to round ticks, so the eye can read values off the chart."""
    if not values:
        return 0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0], 2
    low, high = min(values), max(values)
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    low = math.floor(low / step) * step
    high = math.ceil(high / step) * step
    count = round((high - low) / step)
    ticks = [low + k * step for k in range(count + 1)]
    decimals = max(0, -math.floor(math.log10(step)))
    return low, high, ticks, decimals


def _segments(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    segments: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append((i, value))
    if current:
        segments.append(current)
    return segments


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any, default: str) -> str:
    return default if value is None or value == "" else str(value)


def _cell(value: Any) -> str:
    """Escaped text for a table cell; floats shortened, containers shown as JSON."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return escape(f"{value:.4g}") if math.isfinite(value) else "n/a"
    if isinstance(value, (Mapping, list, tuple)):
        return escape(json.dumps(value, default=str))
    return escape(str(value))


def _percent(value: Any) -> str:
    number = _finite(value)
    return "n/a" if number is None else f"{number:.1%}"


def _shorten(label: str, limit: int = 18) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
