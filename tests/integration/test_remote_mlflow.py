"""A project on a shared MLflow tracking server, the way a team runs one: `mlflow server` on
loopback with its runs and registry in PostgreSQL and its artifacts on S3-compatible storage
(moto), served through the server (`--serve-artifacts`), and modelloop told only
MODELLOOP_TRACKING_URI=http://... (and MODELLOOP_DB_URL on PostgreSQL). The client holds no
S3 credentials: every artifact goes through the tracking server.

The registry adapter's shared checks run on the server; then train, a retrain the gate decides,
serve, monitor and rollback go through the real CLI, and `doctor` passes. Then the artifact store
fails under the server (a training fails half-way; `doctor` names the artifact store), and the
server stops: every command says the tracking server failed, naming it, instead of finding "no
champion", while the running model server keeps answering. A server that answers with errors
(503, 401, 403) is an error too, said plainly and within seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from modelloop.registry import MlflowRegistry, check_registry
from modelloop.registry.mlflow import CLIENT_DEFAULTS
from tests.integration.conftest import ServerProcess, cli_json, run_cli
from tests.integration.synthetic import day, make_frame, rows_between, split_body, write_project
from tests.postgres import POSTGRES_MLFLOW_URL, fresh_database, server_url
from tests.s3 import S3Server, free_port, s3_server

pytestmark = pytest.mark.integration

FEATURES = ["x1", "x2", "x3", "seg"]
#: How long `mlflow server` may take to answer /health (it migrates a new database first).
START_SECONDS = 90.0
#: The client's environment keeps none of these: artifacts reach S3 only through the server.
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE")


@dataclass
class TrackingServer:
    """`mlflow server` in its own process group, its output in a file."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=20)


def start_tracking_server(
    backend_store: str, artifacts: str, env: dict[str, str], log_path: Path
) -> TrackingServer:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", backend_store,
             "--artifacts-destination", artifacts, "--serve-artifacts"],
            # Its job runner (GenAI scorers) would start eight more processes; nothing here uses it.
            env={**os.environ, **env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = TrackingServer(url, process, log_path)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"mlflow server did not answer on {url}:\n{log_path.read_text()}")
        time.sleep(0.2)


def _split(rows: pd.DataFrame) -> bytes:
    return split_body(rows[["row_id", "event_time", *FEATURES]])


def _predict(client: httpx.Client, rows: pd.DataFrame) -> httpx.Response:
    return client.post("/invocations", content=_split(rows), headers={"Content-Type": "application/json"})


def _served_version(client: httpx.Client, rows: pd.DataFrame, want: str, seconds: float) -> str:
    """The version the server answers with, polled until it is `want` or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        answer = _predict(client, rows)
        assert answer.status_code == 200, answer.text
        version = answer.headers["X-Model-Version"]
        if version == want or time.monotonic() > deadline:
            return version
        time.sleep(0.5)


def _failure(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = run_cli(*args, cwd=cwd, check=False, timeout=120)
    assert done.returncode != 0, f"modelloop {' '.join(args)} succeeded:\n{done.stdout}"
    return done


def _drop_bucket(s3: S3Server, bucket: str) -> None:
    """Empty and delete `bucket`, as if the artifact store were lost."""
    client = s3.client()
    for key in s3.keys(bucket):
        client.delete_object(Bucket=bucket, Key=key)
    client.delete_bucket(Bucket=bucket)


def _forget_mlflow_uris() -> None:
    import mlflow

    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: back to MLflow's default
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("remote")
    frame = make_frame(days=90)
    frame.to_parquet(root / "data.parquet", index=False)
    write_project(root)
    out: dict[str, Any] = {"root": root}
    with contextlib.ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        tracking_db = stack.enter_context(fresh_database(server_url(POSTGRES_MLFLOW_URL)))
        state_db = stack.enter_context(fresh_database(server_url()))
        s3 = stack.enter_context(s3_server())
        bucket = s3.bucket()
        server = start_tracking_server(
            tracking_db, f"s3://{bucket}/mlartifacts", s3.env, root.parent / "mlflow-server.log"
        )
        stack.callback(server.stop)
        for variable in AWS_VARIABLES:
            env.delenv(variable, raising=False)
        env.setenv("MODELLOOP_TRACKING_URI", server.url)
        env.setenv("MODELLOOP_DB_URL", state_db)
        out.update(s3=s3, bucket=bucket, tracking=server)
        # The adapter's shared checks, in this process, on the server (their own model name).
        # What MLflow and the adapter leave in the environment is gone before the CLI runs,
        # which must manage on MODELLOOP_TRACKING_URI alone.
        left = {**CLIENT_DEFAULTS, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_REGISTRY_URI": server.url}
        for variable, value in left.items():
            env.setenv(variable, value)  # the monkeypatch remembers what to put back
        try:
            check_registry(lambda: MlflowRegistry(server.url, experiment="registry-checks"))
            out["registry_checks"] = None
        except AssertionError as exc:
            out["registry_checks"] = exc
        finally:
            _forget_mlflow_uris()
            for variable in left:
                env.delenv(variable, raising=False)
        out["first"] = cli_json("train", "--as-of", day(30).isoformat(), cwd=root)
        out["keys_after_first"] = s3.keys(bucket, "mlartifacts/")
        # After the drift at day 60, a retrain the gate weighs against the champion.
        out["second"] = cli_json("train", "--as-of", day(75).isoformat(), cwd=root)

        serving = ServerProcess(root)
        stack.callback(serving.stop)
        with httpx.Client(base_url=serving.url, timeout=60) as client:
            answers = []
            for d in range(75, 81):
                answer = _predict(client, rows_between(frame, d, d))
                answers.append((answer.status_code, answer.headers.get("X-Model-Version"),
                                len(answer.json().get("predictions", []))))
                labels = rows_between(frame, d, d)[["row_id", "label"]]
                client.post("/labels", json=labels.to_dict(orient="records")).raise_for_status()
            out["answers"] = answers
            # Without the local copy written at training, version 2's profile (the one that served
            # the window) comes from the registry.
            profiles = root / ".modelloop" / "profiles" / "synthetic-loop"
            (profiles / "2.json").unlink()
            out["monitor"] = cli_json("monitor", "--as-of", day(81).isoformat(), cwd=root)
            out["profiles_fetched"] = sorted(path.name for path in profiles.iterdir())
            out["rollback"] = cli_json("rollback", "--reason", "remote rollback check", cwd=root)
            out["after_rollback"] = cli_json("status", cwd=root)
            out["served_after_rollback"] = _served_version(client, rows_between(frame, 81, 81), "1", 60)
            out["doctor_up"] = cli_json("doctor", cwd=root)

            # The artifact store fails while the tracking server answers: a training fails half-way.
            _drop_bucket(s3, bucket)
            out["train_no_artifacts"] = _failure("train", "--as-of", day(82).isoformat(), cwd=root)
            out["doctor_no_artifacts"] = run_cli("doctor", "--json", cwd=root, check=False, timeout=120)

            server.stop()  # the tracking server goes away; the model server keeps running
            out["served_while_down"] = _predict(client, rows_between(frame, 82, 82)).status_code
        out["status_down"] = _failure("status", cwd=root)
        shutil.rmtree(profiles)  # monitoring needs the registry again
        out["monitor_down"] = _failure("monitor", "--as-of", day(82).isoformat(), cwd=root)
        out["doctor_down"] = run_cli("doctor", "--json", cwd=root, check=False, timeout=120)
        out["serve_down"] = _failure("serve", "--port", str(free_port()), cwd=root)
        yield out


def test_the_mlflow_registry_passes_the_shared_checks_on_a_tracking_server(
    story: dict[str, Any],
) -> None:
    if story["registry_checks"] is not None:
        raise story["registry_checks"]


def test_training_stores_the_model_on_s3_through_the_tracking_server(story: dict[str, Any]) -> None:
    first = story["first"]
    assert first["version"] == 1 and first["decision"]["outcome"] == "promoted"
    keys = story["keys_after_first"]
    assert any(key.endswith("/MLmodel") for key in keys), keys
    assert any(key.endswith("pipeline.joblib") for key in keys), keys


def test_the_gate_decides_a_retrain_against_the_remote_champion(story: dict[str, Any]) -> None:
    second = story["second"]
    assert second["version"] == 2
    decision = second["decision"]
    assert decision["champion"] == 1 and decision["outcome"] == "promoted", decision
    assert decision["candidate_score"] > decision["champion_score"]


def test_serving_loads_the_champion_from_the_remote_registry(story: dict[str, Any]) -> None:
    frame = make_frame(days=90)
    assert story["answers"] == [(200, "2", len(rows_between(frame, d, d))) for d in range(75, 81)]


def test_monitoring_reads_the_champions_profiles_from_the_remote_registry(story: dict[str, Any]) -> None:
    monitored = story["monitor"]
    assert monitored["n_labelled"] >= 200
    assert monitored["metric"]["value"] is not None
    assert "2.json" in story["profiles_fetched"], story["profiles_fetched"]  # fetched from the server


def test_rollback_moves_the_champion_alias_and_the_server_follows(story: dict[str, Any]) -> None:
    assert story["rollback"]["to_version"] == 1 and story["rollback"]["from_version"] == 2
    status = story["after_rollback"]
    assert status["champion"]["version"] == 1 and status["previous"]["version"] == 2
    assert status["moved"] is None  # a tracking server is not the home's to rebase
    assert status["last_decision"]["outcome"] == "rolled_back", status["last_decision"]
    assert story["served_after_rollback"] == "1"
    assert status["backends"]["tracking"] == {
        "kind": "http", "location": story["tracking"].url, "origin": "$MODELLOOP_TRACKING_URI"}
    assert status["backends"]["artifacts"] == {
        "kind": "http", "location": story["tracking"].url, "origin": "tracking server"}


def test_doctor_passes_with_the_server_up(story: dict[str, Any]) -> None:
    doctor = story["doctor_up"]
    assert doctor["ok"], doctor
    checks = {check["name"]: check for check in doctor["checks"]}
    assert checks["artifact store"]["ok"] and checks["artifact store"]["kind"] == "http"


def test_a_tracking_server_that_is_down_is_an_error_naming_it(story: dict[str, Any]) -> None:
    url = story["tracking"].url
    assert story["served_while_down"] == 200  # the loaded champion keeps answering
    for key in ("status_down", "monitor_down", "serve_down"):
        done = story[key]
        assert url in done.stderr, (key, done.stderr)
        assert "Traceback" not in done.stderr and "no champion" not in done.stderr, (key, done.stderr)
        assert "not found" not in done.stderr.lower(), (key, done.stderr)


def test_doctor_names_the_tracking_store_when_the_server_is_down(story: dict[str, Any]) -> None:
    done = story["doctor_down"]
    assert done.returncode == 1, done.stderr
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    tracking = checks["tracking store"]
    assert not tracking["ok"] and tracking["problem"] == "cannot connect", tracking
    assert tracking["location"] == story["tracking"].url
    assert checks["metadata DB"]["ok"]


def test_an_artifact_store_that_fails_half_way_through_training_is_an_error(
    story: dict[str, Any],
) -> None:
    done = story["train_no_artifacts"]
    assert story["tracking"].url in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    checks = {check["name"]: check for check in json.loads(story["doctor_no_artifacts"].stdout)["checks"]}
    assert checks["tracking store"]["ok"], checks["tracking store"]
    artifacts = checks["artifact store"]
    assert not artifacts["ok"] and "mlflow-artifacts:/" in artifacts["detail"], artifacts


class _Refusing(BaseHTTPRequestHandler):
    """Answers every request with one status, as a proxy or an auth layer in front of MLflow does."""

    status = 503
    body = b"Service Unavailable"

    def _answer(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "body", "said"), [
    (503, b"Service Unavailable", "the server kept failing"),
    (401, b"You are not authenticated. Please see the MLflow documentation on authentication.",
     "MLFLOW_TRACKING_PASSWORD"),
    (403, b"Permission denied", "lacks the permission"),
])
def test_a_tracking_server_answering_with_an_error_is_an_error_not_no_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, body: bytes, said: str
) -> None:
    handler = type("Handler", (_Refusing,), {"status": status, "body": body})
    web = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{web.server_address[1]}"
        monkeypatch.setenv("MODELLOOP_TRACKING_URI", url)
        write_project(tmp_path)
        started = time.monotonic()
        done = _failure("status", cwd=tmp_path)
        took = time.monotonic() - started
        # (Past MLflow's retries a 503 costs seconds per check: the doctor is asked about refusals.)
        doctor = None if status >= 500 else json.loads(
            run_cli("doctor", "--json", cwd=tmp_path, check=False, timeout=120).stdout)
    finally:
        web.shutdown()
        web.server_close()
    assert url in done.stderr and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "no champion" not in done.stderr, done.stderr
    assert took < 60, f"status took {took:.0f} s to give up on a server answering {status}"
    if doctor is not None:
        tracking = next(check for check in doctor["checks"] if check["name"] == "tracking store")
        assert not tracking["ok"] and said in tracking["detail"], tracking
        assert tracking["problem"] == "permission denied", tracking

