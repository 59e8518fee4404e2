"""`modelloop demo`: the NYC flights 2013 story through the whole loop.

Train on January and February; then replay March to December through the real HTTP server,
one POST /invocations per day of flights, labels a day later through POST /labels, and
monitoring every week. Drift and weak weeks trigger retraining; the gate decides each time.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelloop.examples.flights import write_example_project
from modelloop.examples.server import BackgroundServer
from modelloop.monitoring.breaches import Breach, BreachKind
from modelloop.monitoring.report import svg_line_chart
from modelloop.project import Project, open_project
from modelloop.serving import create_app

START = datetime(2013, 3, 1)
END = datetime(2014, 1, 1)


@dataclass
class Week:
    number: int
    end: datetime
    champion: int
    metric: float | None
    n_rows: int
    n_labelled: int
    drifted: list[str]
    breaches: list[Breach]
    decisions: list[str] = field(default_factory=list)
    report: str | None = None


def _payload(rows: pd.DataFrame) -> bytes:
    body = rows.to_json(orient="split", date_format="iso", index=False, double_precision=15)
    return b'{"dataframe_split": ' + body.encode() + b"}"


def _decision_text(decision: Any) -> str:
    score = "n/a" if decision.candidate_score is None else f"{decision.candidate_score:.3f}"
    champ = (
        "" if decision.champion_score is None else f" vs v{decision.champion} {decision.champion_score:.3f}"
    )
    return f"v{decision.version} {decision.outcome} ({score}{champ})"


def run_demo(directory: Path, *, console: Console, weeks: int | None = None) -> list[Week]:
    """Set up the project in `directory` and play the year; returns the weekly rows."""
    import httpx

    with console.status("writing the demo project and NYC flights 2013 data"):
        project_file, _ = write_example_project(directory)
        project = open_project(project_file, directory / ".modelloop")
        project.registry.ensure_store()
    data = project.config.data
    frame = project.source.load(None, None)
    columns = [data.id_column, data.timestamp, *data.features.all]
    days = pd.date_range(START, END - timedelta(days=1), freq="D")
    if weeks is not None:
        days = days[: weeks * 7]

    with console.status("training on January and February, then gating"):
        result, decision = project.train(as_of=START)
    console.print(
        f"trained version {result.version.version} on {result.rows['train']:,} flights; "
        f"holdout ROC AUC {result.score:.3f}; gate: {decision.outcome if decision else '-'}"
    )
    by_day = {day: rows for day, rows in frame.groupby(frame[data.timestamp].dt.normalize())}
    history: list[Week] = []
    app = create_app(project)
    server = BackgroundServer(app).start()
    client = httpx.Client(base_url=server.url, timeout=60)
    served = app.holder.version
    pending: list[str] = []
    try:
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        with progress:
            task = progress.add_task("replaying 2013", total=len(days))
            for i, day in enumerate(days):
                rows = by_day.get(day)
                if rows is not None and len(rows):
                    answer = client.post(
                        "/invocations",
                        content=_payload(rows[columns]),
                        headers={
                            "Content-Type": "application/json",
                            "X-Request-Id": f"demo-{day:%Y-%m-%d}",
                        },
                    )
                    answer.raise_for_status()
                yesterday = by_day.get(day - timedelta(days=1))
                if yesterday is not None and len(yesterday):
                    labels = yesterday[[data.id_column, data.target]].to_json(orient="records")
                    client.post(
                        "/labels",
                        content=labels.encode(),
                        headers={"Content-Type": "application/json"},
                    ).raise_for_status()
                progress.update(task, advance=1, description=f"replaying {day:%b %d}")
                if (i + 1) % 7:
                    continue
                as_of = (day + timedelta(days=1)).to_pydatetime()
                outcome = project.monitor(as_of=as_of)
                res = outcome.result
                week = Week(
                    number=len(history) + 1,
                    end=as_of,
                    champion=served,
                    metric=res.metric_value,
                    n_rows=res.n_rows,
                    n_labelled=res.n_labelled,
                    drifted=res.drift.drifted if res.drift else [],
                    breaches=res.breaches,
                    decisions=pending,
                    report=str(res.report_html),
                )
                pending = []
                if outcome.trigger and not outcome.trigger["fired"]:
                    week.decisions.append("retrain skipped: cooldown")
                if outcome.decision is not None:
                    week.decisions.append(_decision_text(outcome.decision))
                    if outcome.decision.outcome == "promoted":
                        # The new champion is loaded and warmed, then swapped in under the
                        # running server: the next request is answered by it.
                        app.holder.swap(project.load_served_model())
                        served = app.holder.version
                history.append(week)
    finally:
        client.close()
        server.stop()
    summary = write_summary(project, history)
    render_table(console, project, history)
    console.print(f"report: {summary}")
    console.print(f"next: cd {directory} && modelloop status")
    return history


def render_table(console: Console, project: Project, history: list[Week]) -> None:
    metric = project.config.evaluation.metric
    table = Table(
        "week",
        "ending",
        "champion",
        metric,
        "labelled",
        "drift alert",
        "decisions",
        title=f"{project.name}: a year in production",
    )
    for w in history:
        n_features = len(project.config.data.features.all)
        drift = f"{len(w.drifted)}/{n_features}"
        if any(b.kind is BreachKind.DRIFT for b in w.breaches):
            more = "…" if len(w.drifted) > 2 else ""
            drift = f"[red]ALERT {drift}[/]: " + ", ".join(w.drifted[:2]) + more
        value = "—" if w.metric is None else f"{w.metric:.3f}"
        if any(b.kind is BreachKind.PERFORMANCE for b in w.breaches):
            value = f"[red]{value} ALERT[/]"
        table.add_row(
            str(w.number),
            f"{w.end - timedelta(days=1):%b %d}",
            f"v{w.champion}",
            value,
            f"{w.n_labelled:,}",
            drift,
            "; ".join(w.decisions) or "—",
        )
    console.print(table)
    console.print("[bold]gate decisions, with their reasons[/]")
    for d in reversed(project.db.decisions(limit=500)):
        colour = "green" if d["outcome"] == "promoted" else "red"
        console.print(f"  v{d['version']} [{colour}]{d['outcome']}[/] as of {d['as_of']}", highlight=False)
        for reason in d["reasons"]:
            console.print(f"    - {reason}", highlight=False)


def write_summary(project: Project, history: list[Week]) -> Path:
    """One HTML page: the weekly metric as a chart, and every week's alerts and decisions."""
    floor = project.config.monitoring.performance_floor
    metric = project.config.evaluation.metric
    chart = svg_line_chart(
        [(f"{w.end - timedelta(days=1):%m-%d}", w.metric) for w in history],
        title=f"weekly {metric} of the serving champion",
        floor=floor,
        floor_label="floor" if project.config.maximize else "ceiling",
    )
    rows = "".join(
        f"<tr><td>{w.number}</td><td>{w.end - timedelta(days=1):%Y-%m-%d}</td><td>v{w.champion}</td>"
        f"<td>{'—' if w.metric is None else f'{w.metric:.3f}'}</td><td>{w.n_labelled:,}</td>"
        f"<td>{html.escape(', '.join(w.drifted))}</td><td>{html.escape('; '.join(map(str, w.breaches)))}</td>"
        f"<td>{html.escape('; '.join(w.decisions))}</td>"
        f'<td><a href="{html.escape(Path(w.report).name) if w.report else ""}">report</a></td></tr>'
        for w in history
    )
    decisions = "".join(
        f"<li><b>v{d['version']} {html.escape(d['outcome'])}</b> as of {html.escape(str(d['as_of']))}<ul>"
        + "".join(f"<li>{html.escape(r)}</li>" for r in d["reasons"])
        + "</ul></li>"
        for d in reversed(project.db.decisions(limit=500))
    )
    title = html.escape(project.name)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}: demo</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}</style></head><body>
<h1>{html.escape(project.name)}: a year in production (NYC flights 2013)</h1>{chart}
<h2>Weeks</h2><table><tr><th>week</th><th>ending</th><th>champion</th><th>{html.escape(metric)}</th>
<th>labelled</th><th>drifted features</th><th>alerts</th><th>decisions</th><th></th></tr>{rows}</table>
<h2>Every gate decision, with its reasons</h2><ul>{decisions}</ul></body></html>"""
    path = project.reports_dir / "demo-summary.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    (project.reports_dir / "demo-summary.json").write_text(
        json.dumps(
            [
                {**w.__dict__, "end": w.end.isoformat(), "breaches": list(map(str, w.breaches))}
                for w in history
            ],
            indent=2,
        ),
        encoding="utf-8",
    )
    return path
