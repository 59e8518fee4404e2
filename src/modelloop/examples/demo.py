"""`modelloop demo`: the NYC flights 2013 story through the whole loop.

Train on January and February; then replay March to December through the real HTTP server,
one POST /invocations per day of flights, labels a day later through POST /labels, and
monitoring every week. Drift and weak weeks trigger retraining; the gate decides each time.
"""

from __future__ import annotations

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
from modelloop.project import Project, open_project
from modelloop.reports import render_demo
from modelloop.serving import create_app

START = datetime(2013, 3, 1)
END = datetime(2014, 1, 1)
#: One week the replay breaks on purpose, as an upstream change would: monitoring must say so.
INCIDENT_WEEK = 20
INCIDENT = "an upstream change sends distance in kilometres instead of miles"


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
    #: More than monitoring.drift_share of the features drifted (the condition that retrains).
    drift_alarm: str | None = None
    incident: str | None = None


def _payload(rows: pd.DataFrame) -> bytes:
    body = rows.to_json(orient="split", date_format="iso", index=False, double_precision=15)
    return b'{"dataframe_split": ' + body.encode() + b"}"


def _decision_text(decision: Any) -> str:
    if decision.candidate_score is None:  # stopped before scoring: say by what
        failed = next((r for r in decision.reasons if "FAILED" in r), "")
        why = "model test failed" if "model test" in failed else "validity failed" if failed else "n/a"
        return f"v{decision.version} {decision.outcome} ({why})"
    score = f"{decision.candidate_score:.3f}"
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
                incident = i // 7 + 1 == INCIDENT_WEEK
                if rows is not None and len(rows):
                    sent = rows[columns]
                    if incident:
                        sent = sent.assign(distance=sent["distance"] * 1.609344)
                    answer = client.post(
                        "/invocations",
                        content=_payload(sent),
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
                    drift_alarm=res.drift_alarm,
                    incident=INCIDENT if incident else None,
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
        more = "…" if len(w.drifted) > 2 else ""
        named = (": " + ", ".join(w.drifted[:2]) + more) if w.drifted else ""
        drift = f"{len(w.drifted)}/{n_features}{named}"
        if w.drift_alarm:
            drift = f"[red]ALERT {drift}[/]"
        if w.incident:
            drift += f" [yellow](incident: {w.incident})[/]"
        value = "—" if w.metric is None else f"{w.metric:.3f}"
        if any(b.kind is BreachKind.PERFORMANCE and b.subject == metric for b in w.breaches):
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
    payload = {
        "title": f"{project.name}: a year in production (NYC flights 2013)",
        "model": project.name,
        "metric": project.config.evaluation.metric,
        "floor": project.config.monitoring.performance_floor,
        "direction": project.config.evaluation.direction,
        "weeks": [
            {
                "number": w.number,
                "ending": f"{w.end - timedelta(days=1):%Y-%m-%d}",
                "champion": w.champion,
                "metric": w.metric,
                "n_labelled": w.n_labelled,
                "drifted": w.drifted,
                # Drift is the column before: the rest (performance, quality, volume) here.
                "breaches": [b.to_dict() for b in w.breaches if b.kind is not BreachKind.DRIFT],
                "decisions": w.decisions,
                "report": Path(w.report).name if w.report else None,
                "drift_alarm": w.drift_alarm,
                "incident": w.incident,
            }
            for w in history
        ],
        "decisions": list(reversed(project.db.decisions(limit=500))),
    }
    page = render_demo(payload)
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
