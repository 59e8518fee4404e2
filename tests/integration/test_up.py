"""`modelloop up` as a team runs it: one process that serves, runs the schedules, takes
POST /pipelines, retries what failed, and stops cleanly; and the faults a long-running process
meets (killed mid-training, two of them on one project)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from modelloop.examples.server import free_port
from tests.integration.conftest import ServerProcess, cli_json, run_cli
from tests.integration.synthetic import day, make_frame, write_project

pytestmark = pytest.mark.integration

TOKEN = "s3cret-for-tests"
FEATURES = ["x1", "x2", "x3", "seg"]


def _split(rows: pd.DataFrame) -> bytes:
    body = rows.to_json(orient="split", date_format="iso", index=False, double_precision=15)
    return b'{"dataframe_split": ' + body.encode() + b"}"


def _wait(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds:.0f} s")


def _stop(server: ServerProcess, signal_number: int = signal.SIGTERM) -> tuple[int, float]:
    started = time.monotonic()
    os.killpg(server.proc.pid, signal_number)
    code = server.proc.wait(timeout=60)
    server.log.close()
    return code, time.monotonic() - started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("up")
    frame = make_frame(days=60)
    frame.to_parquet(root / "data.parquet", index=False)
    # Slow enough to be caught mid-training by the fault test.
    write_project(root, params="{max_iter: 400, early_stopping: false, random_state: 0}")
    with (root / "modelloop.yaml").open("a") as f:
        f.write(
            'schedule:\n  monitor: "* * * * *"\n'
            "leases:\n  ttl: 6s\n"
            "retries:\n  count: 1\n  backoff: 1s\n"
        )
    cli_json("train", "--as-of", day(45).isoformat(), cwd=root)
    yield root


def _runs(url: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/pipelines?limit=100", headers={"Authorization": f"Bearer {TOKEN}"})
    answer.raise_for_status()
    runs: list[dict[str, Any]] = answer.json()["runs"]
    return runs


def test_up_serves_runs_its_schedule_once_across_two_processes_and_stops_on_sigterm(
    project: Path,
) -> None:
    env = {"MODELLOOP_TOKEN": TOKEN}
    first = ServerProcess(project, command="up", env=env)
    second = ServerProcess(project, command="up", env=env)
    # A minute that fired before the second process was up ran in the first alone: judge later.
    both_up = datetime.now(UTC).replace(tzinfo=None).isoformat()
    try:
        frame = make_frame(days=60)
        rows = frame[frame["event_time"].dt.floor("D") == pd.Timestamp(day(46))]
        for server in (first, second):
            assert httpx.get(f"{server.url}/ping").status_code == 200
            scored = httpx.post(
                f"{server.url}/invocations",
                content=_split(rows[["row_id", "event_time", *FEATURES]]),
                headers={"Content-Type": "application/json"},
            )
            assert scored.status_code == 200 and len(scored.json()["predictions"]) == len(rows)
        # Pipelines over HTTP need the token.
        refused = httpx.post(f"{first.url}/pipelines/monitor")
        assert refused.status_code == 401
        unknown = httpx.post(f"{first.url}/pipelines/deploy", headers={"Authorization": f"Bearer {TOKEN}"})
        assert unknown.status_code == 404 and "train, monitor, score" in unknown.json()["message"]
        asked = httpx.post(
            f"{first.url}/pipelines/monitor?reason=smoke",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert asked.status_code == 202 and asked.json()["queued"] is True
        api = _wait(
            lambda: [r for r in _runs(first.url) if r["origin"] == "api" and r["status"] == "succeeded"],
            60,
            "the API's monitor run",
        )
        assert api[0]["trigger"] == "POST /pipelines/monitor: smoke"

        # The dashboard's "run now": signed in with the token, the form's CSRF token, a reason.
        with httpx.Client(base_url=first.url, timeout=60, follow_redirects=False) as browser:
            signed = browser.post("/ui/signin", data={"who": "cleo", "token": TOKEN})
            assert signed.status_code == 303, signed.text
            page = browser.get("/ui").text
            assert 'action="/ui/actions/run"' in page
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf is not None
            forged = browser.post("/ui/actions/run", data={"pipeline": "monitor", "reason": "x",
                                                           "csrf": "forged"})
            assert forged.status_code == 403
            queued = browser.post("/ui/actions/run", data={"pipeline": "monitor",
                                                           "reason": "labels arrived",
                                                           "csrf": csrf.group(1)})
            assert queued.status_code == 303 and queued.headers["location"] == "/ui?done=queued"
        dashboard = _wait(
            lambda: [r for r in _runs(first.url)
                     if r["trigger"] == "dashboard, by cleo: labels arrived" and r["status"] == "succeeded"],
            60,
            "the dashboard's monitor run",
        )
        assert len(dashboard) == 1 and dashboard[0]["origin"] == "api"

        # The schedule fires every minute in both processes; each fire time runs once.
        scheduled = _wait(
            lambda: [r for r in cli_json("runs", "--pipeline", "monitor", cwd=project)
                     if r["origin"] == "schedule" and r["status"] in ("succeeded", "skipped")
                     and r["started_at"] > both_up],
            150,
            "a scheduled monitor run",
        )
        time.sleep(3)  # the other process's attempt at the same minute
        minute = scheduled[-1]["started_at"][:16]
        same = [r for r in cli_json("runs", "--pipeline", "monitor", cwd=project)
                if r["origin"] == "schedule" and r["started_at"][:16] == minute]
        assert sorted(r["status"] for r in same) == ["skipped", "succeeded"], same
        ran = next(r for r in same if r["status"] == "succeeded")
        assert ran["produced"]["rows"] >= 2 * len(rows) and ran["error"] is None
        assert {"id", "pipeline", "trigger", "status", "started_at", "finished_at", "error"} <= set(ran)
    finally:
        codes = [_stop(server) for server in (first, second)]
    for code, seconds in codes:
        assert code == 0 and seconds < 30, codes
    assert "Traceback" not in first.log_path.read_text() + second.log_path.read_text()
    assert not [r for r in cli_json("runs", "--limit", "100", cwd=project) if r["status"] == "running"]
    assert list((project / ".modelloop").rglob("*.wal")) == []  # flushed to Parquet


def test_a_training_killed_mid_run_is_failed_on_restart_and_retried_once(project: Path) -> None:
    env = {"MODELLOOP_TOKEN": TOKEN}
    server = ServerProcess(project, command="up", env=env)
    versions_before = {v["version"] for v in _versions(project)}
    try:
        httpx.post(
            f"{server.url}/pipelines/train", headers={"Authorization": f"Bearer {TOKEN}"}
        ).raise_for_status()
        running = _wait(
            lambda: [r for r in _runs(server.url) if r["pipeline"] == "train" and r["status"] == "running"],
            60,
            "the training to start",
        )[0]
        # A person's `modelloop train` meanwhile is recorded as skipped and exits 75.
        busy = run_cli("train", cwd=project, check=False)
        assert busy.returncode == 75, busy.stderr
        assert f"run {running['id']}" in busy.stderr and "skipped" in busy.stderr
    finally:
        code, _ = _stop(server, signal.SIGKILL)
    assert code == -signal.SIGKILL
    left = {r["id"]: r for r in cli_json("runs", "--limit", "100", cwd=project)}
    # `runs` itself finds the process gone: the run is failed, not left running.
    assert left[running["id"]]["status"] == "failed", left[running["id"]]
    assert "stopped without finishing" in left[running["id"]]["error"]

    restarted = ServerProcess(project, command="up", env=env)
    try:
        retry = _wait(
            lambda: [r for r in _runs(restarted.url)
                     if r["retry_of"] == running["id"] and r["status"] in ("succeeded", "failed")],
            180,
            "the retry to finish",
        )[0]
    finally:
        code, seconds = _stop(restarted)
    assert code == 0 and seconds < 30
    assert retry["status"] == "succeeded" and retry["origin"] == "retry" and retry["attempt"] == 2
    runs = cli_json("runs", "--limit", "200", cwd=project)
    assert len([r for r in runs if r["retry_of"] == running["id"]]) == 1  # retried once
    # Nothing half-registered: a version the killed run registered is failed, never gated.
    new = [v for v in _versions(project) if v["version"] not in versions_before]
    for version in new:
        if version["ledger_run"] == str(running["id"]):
            assert version["status"] == "failed"
    gated = [e for e in cli_json("history", cwd=project) if e["action"] in ("promoted", "rejected")]
    killed = {v["version"] for v in new if v["ledger_run"] == str(running["id"])}
    assert not killed & {e["version"] for e in gated}
    assert len([v for v in new if v["ledger_run"] == str(retry["id"])]) == 1, (
        retry["produced"], new, sorted(versions_before)
    )
    assert versions_before  # the registry read is this project's: it holds the first training


def _versions(project: Path) -> list[dict[str, Any]]:
    """Every registered version with its status and the ledger run that trained it (MLflow)."""
    import mlflow

    # Both URIs: another test in this process may have left MLflow's global registry URI set.
    uri = f"sqlite:///{project / '.modelloop' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.search_model_versions("name='synthetic-loop'")
    return [
        {
            "version": int(v.version),
            "status": v.tags.get("modelloop.status"),
            "ledger_run": v.tags.get("modelloop.ledger_run"),
        }
        for v in found
    ]


def test_up_without_a_champion_says_what_to_do(tmp_path: Path) -> None:
    make_frame(days=20).to_parquet(tmp_path / "data.parquet", index=False)
    write_project(tmp_path)
    done = run_cli("up", "--port", str(free_port()), cwd=tmp_path, check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no champion yet" in done.stderr


