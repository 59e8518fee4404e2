"""Serving in production, through the real server: it follows the champion alias whoever moves it
(here plain MLflow's client, under continuous load: no failed request, no flapping, plain
MLflow's numbers for the version it reports), swaps at once on POST /admin/reload, guards its
writes with the bearer token, scrapes as Prometheus text, and shadows the challenger."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import ServerProcess, cli_json, run_cli
from tests.integration.synthetic import PROJECT, day, make_frame

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-tests"
SERVING = """\
serving:
  reload_interval: 1s
  shadow: true
  guardrails: {max_p99_ratio: 100}  # this machine's noise must not roll back: not judged here
"""


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Version 1 the champion, version 2 a challenger that was never gated."""
    root = tmp_path_factory.mktemp("hotswap")
    frame = make_frame(days=60)
    frame.to_parquet(root / "data.parquet", index=False)
    estimator = "sklearn.linear_model.LogisticRegression"
    (root / "modelloop.yaml").write_text(
        PROJECT.format(estimator=estimator, params="{max_iter: 300}") + SERVING, encoding="utf-8"
    )
    first = cli_json("train", "--as-of", day(30).isoformat(), cwd=root)
    assert first["decision"]["outcome"] == "promoted"
    second = cli_json("train", "--as-of", day(45).isoformat(), "--no-gate", cwd=root)
    assert second["version"] == 2
    rows = frame[frame["event_time"] > pd.Timestamp(day(50))].head(20)
    body = {"dataframe_split": json.loads(
        rows.drop(columns=["label"]).to_json(orient="split", index=False, date_format="iso"))}
    return {"root": root, "rows": rows, "body": body}


def _move_champion(root: Path, version: int) -> None:
    """As a person would in the MLflow UI or with the client: modelloop is not involved."""
    import mlflow

    client = mlflow.MlflowClient(
        tracking_uri=f"sqlite:///{root / '.modelloop' / 'mlflow.db'}",
        registry_uri=f"sqlite:///{root / '.modelloop' / 'mlflow.db'}",
    )
    client.set_registered_model_alias("synthetic-loop", "champion", str(version))


def _plain_mlflow(root: Path, version: int, rows: pd.DataFrame) -> np.ndarray:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / '.modelloop' / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{root / '.modelloop' / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/synthetic-loop/{version}")
    return np.asarray(model.predict(rows.drop(columns=["label"])), dtype="float64")


class Load:
    """Clients posting the same rows without pause, recording every answer."""

    def __init__(self, url: str, body: dict[str, Any], clients: int = 3) -> None:
        self.url, self.body = url, body
        self.answers: list[tuple[float, int, str | None, list[float] | None]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post(f"{self.url}/invocations", json=self.body)
                    record = (time.monotonic(), answer.status_code,
                              answer.headers.get("x-model-version"),
                              answer.json().get("predictions") if answer.status_code == 200 else None)
                except httpx.HTTPError as exc:
                    record = (time.monotonic(), -1, type(exc).__name__, None)
                with self._lock:
                    self.answers.append(record)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def wait_for(self, version: str, since: float, timeout: float = 15) -> float:
        deadline = since + timeout
        while time.monotonic() < deadline:
            with self._lock:
                hit = next((t for t, _, v, _ in self.answers if t > since and v == version), None)
            if hit is not None:
                return hit - since
            time.sleep(0.05)
        raise AssertionError(f"the server did not serve version {version} within {timeout} s")


@pytest.fixture
def server(two_versions: dict[str, Any]) -> Iterator[ServerProcess]:
    root = two_versions["root"]
    _move_champion(root, 1)
    previous = os.environ.get("MODELLOOP_TOKEN")
    os.environ["MODELLOOP_TOKEN"] = TOKEN  # the server process inherits it
    try:
        process = ServerProcess(root)
    finally:
        if previous is None:
            os.environ.pop("MODELLOOP_TOKEN", None)
        else:
            os.environ["MODELLOOP_TOKEN"] = previous
    try:
        yield process
    finally:
        process.stop()
        _move_champion(root, 1)


def test_the_server_follows_the_alias_under_load_with_no_failed_request(
        two_versions: dict[str, Any], server: ServerProcess) -> None:
    root, rows = two_versions["root"], two_versions["rows"]
    with Load(server.url, two_versions["body"]) as load:
        time.sleep(1.0)
        moved = time.monotonic()
        _move_champion(root, 2)
        to_two = load.wait_for("2", moved)
        time.sleep(1.5)
        moved_back = time.monotonic()
        _move_champion(root, 1)
        to_one = load.wait_for("1", moved_back)
        time.sleep(1.0)
    answers = sorted(load.answers)
    assert len(answers) > 50
    assert [a for a in answers if a[1] != 200] == []  # not one failed request
    # No flapping. Requests in flight at a swap finish in any order (each is scored by the
    # version it started with), so the client's view is judged after a short grace; the server's
    # own record of its swaps must show exactly one each way.
    first_two = next(t for t, _, v, _ in answers if v == "2")
    first_one_again = next(t for t, _, v, _ in answers if t > moved_back and v == "1")
    assert not [a for a in answers if first_two + 0.5 < a[0] < moved_back and a[2] != "2"]
    assert not [a for a in answers if a[0] > first_one_again + 0.5 and a[2] != "1"]
    status = httpx.get(f"{server.url}/admin/status", timeout=10,
                       headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [(s["from_version"], s["to_version"]) for s in status["swaps"]] == [(1, 2), (2, 1)]
    assert to_two < 15 and to_one < 15
    history = cli_json("history", cwd=root)
    outside = [e for e in history if e["action"] == "moved_outside_modelloop"]
    assert [(e["from_version"], e["version"]) for e in outside][:2] == [(2, 1), (1, 2)]
    for version in (1, 2):
        expected = _plain_mlflow(root, version, rows)
        got = next(p for _, _, v, p in answers if v == str(version))
        assert np.allclose(got, expected, atol=1e-9)


def test_admin_reload_swaps_at_once_and_needs_the_token(
        two_versions: dict[str, Any], server: ServerProcess) -> None:
    root = two_versions["root"]
    refused = httpx.post(f"{server.url}/admin/reload", timeout=30)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    _move_champion(root, 2)
    answer = httpx.post(f"{server.url}/admin/reload", timeout=30,
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2
    status = httpx.get(f"{server.url}/admin/status", timeout=10,
                       headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert status["version"] == 2 and sorted(status["loaded"]) == [1, 2]  # 1 kept for the bake
    assert status["bake"]["previous_version"] == 1 and status["bake"]["baking"]
    servers = cli_json("status", cwd=root)["servers"]
    assert [s["version"] for s in servers] == [2] and servers[0]["url"] == server.url


def test_labels_need_the_token_scoring_does_not(
        two_versions: dict[str, Any], server: ServerProcess) -> None:
    labels = [{"row_id": "r000001", "label": 1}]
    assert httpx.post(f"{server.url}/labels", json=labels, timeout=10).status_code == 401
    wrong = httpx.post(f"{server.url}/labels", json=labels, timeout=10,
                       headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = httpx.post(f"{server.url}/labels", json=labels, timeout=10,
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200 and right.json()["stored"] == 1
    scored = httpx.post(f"{server.url}/invocations", json=two_versions["body"], timeout=10)
    assert scored.status_code == 200


def test_metrics_and_shadow_traffic(two_versions: dict[str, Any], server: ServerProcess) -> None:
    root = two_versions["root"]
    for i in range(5):
        answer = httpx.post(f"{server.url}/invocations", json=two_versions["body"], timeout=10,
                            headers={"X-Request-Id": f"shadowed-{i}"})
        assert answer.status_code == 200 and answer.headers["x-model-version"] == "1"
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'modelloop_requests_total{route="/invocations",status="200",version="1"}' in text
    assert "modelloop_batch_rows_bucket" in text and "modelloop_model_version 1.0" in text
    assert 'modelloop_predictions_bucket{le="0.5",version="1"}' in text
    assert "modelloop_wal_backlog_bytes" in text and "modelloop_wal_flush_age_seconds" in text
    server.stop()  # the shadow log and the prediction log are flushed to Parquet at shutdown
    shadow = pd.read_parquet(root / ".modelloop" / "shadow" / "synthetic-loop")
    mine = shadow[shadow["_request_id"].str.startswith("shadowed-")]
    assert len(mine) == 5 * 20 and set(mine["_model_version"]) == {2}  # the challenger's
    served = pd.read_parquet(root / ".modelloop" / "predictions" / "synthetic-loop")
    assert set(served.loc[served["_request_id"].str.startswith("shadowed-"), "_model_version"]) == {1}


def test_a_public_address_without_a_token_refuses_to_start(two_versions: dict[str, Any]) -> None:
    done = run_cli("serve", "--host", "0.0.0.0", "--port", "1", cwd=two_versions["root"],
                   check=False, timeout=120)
    assert done.returncode == 2, done
    assert "MODELLOOP_TOKEN" in done.stderr and "--no-auth" in done.stderr
    assert "Traceback" not in done.stderr
