"""The prediction log loses nothing: a server killed with SIGKILL under load, three times, then
restarted and stopped cleanly, has every acknowledged request in the Parquet log with exactly its
rows, none twice, no unreadable file, no stray temp file. SIGTERM stops cleanly with exit 0."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import CLI, ServerProcess, run_cli
from tests.integration.synthetic import make_frame, write_project

pytestmark = pytest.mark.integration

FEATURES = ["x1", "x2", "x3", "seg"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("durable")
    frame = make_frame(days=40)
    frame.to_parquet(directory / "data.parquet", index=False)
    write_project(directory, params="{max_iter: 30, random_state: 0}")
    run_cli("train", "--as-of", "2024-02-01", cwd=directory)
    return directory


class Load:
    """Threads posting small requests until stopped; remembers what was acknowledged."""

    def __init__(self, url: str, threads: int = 6) -> None:
        self.url = url
        self.acknowledged: dict[str, list[str]] = {}
        self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        rng = random.Random()
        deadline = time.monotonic() + 60  # bounded even if nobody stops us
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                request_id = uuid.uuid4().hex
                rows = [f"{request_id}-{i}" for i in range(rng.randint(1, 4))]
                body = {"dataframe_records": [
                    {"row_id": row, "event_time": "2024-02-03T10:00:00", "x1": rng.random(),
                     "x2": rng.random(), "x3": None, "seg": rng.choice("abc")} for row in rows]}
                try:
                    answer = client.post("/invocations", json=body, headers={"x-request-id": request_id})
                except httpx.HTTPError:
                    with self._lock:
                        self.failed += 1
                    time.sleep(0.01)
                    continue
                if answer.status_code == 200:
                    with self._lock:
                        self.acknowledged[request_id] = rows

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20)


def test_sigkill_under_load_three_times_loses_no_acknowledged_row(served: Path) -> None:
    acknowledged: dict[str, list[str]] = {}
    for _ in range(3):
        server = ServerProcess(served)
        with Load(server.url) as load:
            time.sleep(random.uniform(1.0, 2.5))
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=15)
        server.log.close()
        assert len(load.acknowledged) > 20, "the load never got going"
        acknowledged.update(load.acknowledged)
    # A restart replays what the killed servers left; a clean stop flushes everything.
    final = ServerProcess(served)
    final.stop()
    assert final.proc.returncode == 0

    log_dir = served / ".modelloop" / "predictions" / "synthetic-loop"
    files = sorted(log_dir.rglob("*"))
    stray = [f for f in files if f.is_file() and (f.name.startswith(".") or f.suffix in (".tmp", ".wal"))]
    assert stray == []
    parquet = [f for f in files if f.suffix == ".parquet"]
    for path in parquet:
        pq.ParquetFile(path).metadata  # noqa: B018 - every file must be readable
    assert all(f.parent.name.startswith("date=") for f in parquet)
    rows = duckdb.sql(
        "SELECT _request_id, row_id FROM read_parquet(?, union_by_name = true)",
        params=[[str(f) for f in parquet]],
    ).fetchall()
    logged: dict[str, list[str]] = {}
    for request_id, row_id in rows:
        logged.setdefault(request_id, []).append(row_id)
    missing = [r for r in acknowledged if r not in logged]
    assert missing == [], f"{len(missing)} acknowledged request(s) lost"
    for request_id, expected in acknowledged.items():
        assert sorted(logged[request_id]) == sorted(expected), request_id  # exactly its rows, once
    assert len(rows) == len({row for row in rows}), "a row was logged twice"
    # Requests killed before their answer are either wholly in the log or wholly absent.
    for request_id, row_ids in logged.items():
        assert len(row_ids) == len(set(row_ids))
        assert {r.rsplit("-", 1)[0] for r in row_ids} == {request_id}


def test_sigterm_finishes_requests_in_flight_flushes_and_exits_zero(served: Path) -> None:
    server = ServerProcess(served)
    results: list[Any] = []
    connected = threading.Barrier(4, timeout=30)
    bodies = [json.dumps({"dataframe_records": [
        {"row_id": f"term-{uuid.uuid4().hex}", "event_time": "2024-02-03T10:00:00", "x1": 0.1 * i,
         "x2": 0.2, "x3": 1.0, "seg": "a"} for i in range(5_000)]}).encode() for _ in range(3)]

    def slowly(body: bytes) -> Iterator[bytes]:
        # The body trickles in over about a second, so SIGTERM lands while it is in flight.
        step = len(body) // 10 + 1
        yield body[:step]
        connected.wait()
        for start in range(step, len(body), step):
            time.sleep(0.1)
            yield body[start:start + step]

    def big_request(body: bytes) -> None:
        try:
            answer = httpx.post(f"{server.url}/invocations", content=slowly(body),
                                headers={"content-type": "application/json"}, timeout=60)
            results.append(answer.status_code)
        except httpx.HTTPError as exc:
            results.append(exc)

    threads = [threading.Thread(target=big_request, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    connected.wait()  # every request has started sending its body
    time.sleep(0.2)
    os.killpg(server.proc.pid, signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    code = server.proc.wait(timeout=40)
    server.log.close()
    assert code == 0
    assert results == [200, 200, 200]
    leftovers = [p for p in (served / ".modelloop").rglob("*.wal")]
    assert leftovers == []


def test_a_second_serve_on_a_busy_port_fails_with_a_message(served: Path) -> None:
    server = ServerProcess(served)
    try:
        done = subprocess.run([*CLI, "serve", "--port", str(server.port)], cwd=served, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode != 0
        assert "Traceback" not in done.stderr + done.stdout
    finally:
        server.stop()
