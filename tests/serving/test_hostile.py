"""Nothing a client sends can crash the server, poison the log or steer monitoring.

Every case goes through a real uvicorn socket: malformed, oversized, slow and poisoned requests to
/invocations and /labels get a JSON 4xx naming the problem, never a 5xx, never a 200 for an
invalid row, never a row of a rejected request in the log; other clients keep being served; and
monitoring still runs afterwards."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from modelloop.config import parse_config
from modelloop.examples.server import BackgroundServer
from modelloop.project import Project
from modelloop.serving import create_app
from tests.conftest import AS_OF, RAW_CONFIG, build_project

ROW: dict[str, Any] = {"hour": 6, "distance": 300, "temp": 2.5, "carrier": "DL",
                       "flight_id": "F-ok", "sched_dep": "2024-03-01T08:00:00"}
MAX_BODY = 20_000


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, BackgroundServer]]:
    raw = copy.deepcopy(RAW_CONFIG)
    raw["serving"] = {"max_body": MAX_BODY, "body_timeout": "1s", "max_value_length": 64,
                      "max_clock_skew": "1d"}
    from tests.conftest import build_flights

    project = build_project(tmp_path_factory.mktemp("hostile"), build_flights(), parse_config(raw))
    _, decision = project.train(as_of=AS_OF)
    assert decision is not None and decision.outcome == "promoted"
    with BackgroundServer(create_app(project)) as server:
        yield project, server


def logged(project: Project, request_id: str) -> int:
    log = project.logs.read_predictions()
    return int((log["_request_id"] == request_id).sum())


def post(server: BackgroundServer, path: str, body: bytes, content_type: str = "application/json",
         request_id: str | None = None) -> httpx.Response:
    headers = {"content-type": content_type, "x-request-id": request_id or uuid.uuid4().hex}
    return httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=30)


def records(**change: Any) -> bytes:
    return json.dumps({"dataframe_records": [ROW, {**ROW, **change}]}).encode()


INVOCATIONS: list[tuple[str, Callable[[], bytes], str, int, str]] = [
    ("id not a scalar", lambda: records(flight_id=["F1", "F2"]), "application/json", 400, "flight_id"),
    ("id an object", lambda: records(flight_id={"$ne": 1}), "application/json", 400, "flight_id"),
    ("id a float", lambda: records(flight_id=1.5), "application/json", 400, "flight_id"),
    ("id too long", lambda: records(flight_id="F" * 65), "application/json", 400, "max_value_length"),
    ("timestamp unparseable", lambda: records(sched_dep="yesterday-ish"), "application/json", 400,
     "sched_dep"),
    ("timestamp a bare integer", lambda: records(sched_dep=1709280000), "application/json", 400,
     "bare number"),
    ("timestamp in the future", lambda: records(sched_dep="2999-01-01T00:00:00"), "application/json", 400,
     "max_clock_skew"),
    ("timestamp a list", lambda: records(sched_dep=["2024-03-01"]), "application/json", 400, "sched_dep"),
    ("number past float range", lambda: b'{"dataframe_records": [{"hour": 1e999}]}', "application/json", 400,
     "not valid JSON"),
    ("4,400 digits", lambda: b'{"dataframe_records": [{"hour": ' + b"7" * 4400 + b"}]}",
     "application/json", 400,
     "not valid JSON"),
    ("numeric text past float range", lambda: records(hour="1e999"), "application/json", 400, "finite"),
    ("NaN text", lambda: records(distance="nan"), "application/json", 400, "distance"),
    ("lone surrogate", lambda: b'{"dataframe_records": [{"carrier": "\\udc80"}]}', "application/json", 400,
     "not valid JSON"),
    ("invalid UTF-8", lambda: b'{"dataframe_records": [{"carrier": "\xc3\x28"}]}', "application/json", 400,
     "not valid JSON"),
    ("deep nesting", lambda: b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400,
     "not valid JSON"),
    ("nested cell", lambda: records(carrier={"a": [1, {"b": 2}]}), "application/json", 400, "not a scalar"),
    ("category too long", lambda: records(carrier="X" * 65), "application/json", 400, "max_value_length"),
    ("feature a list", lambda: records(distance=[1, 2]), "application/json", 400, "not a scalar"),
    ("null where forbidden", lambda: records(hour=None), "application/json", 400, "hour"),
    ("missing feature", lambda: json.dumps({"dataframe_records": [{"hour": 1}]}).encode(), "application/json",
     400, "missing"),
    ("empty body", lambda: b"", "application/json", 400, "not valid JSON"),
    ("JSON array", lambda: b"[1, 2, 3]", "application/json", 400, "must be an object"),
    ("two formats", lambda: b'{"inputs": {"hour": 1}, "instances": [{"hour": 1}]}', "application/json", 400,
     "exactly one"),
    ("unsupported type", lambda: b"hour=1", "application/x-www-form-urlencoded", 415, "text/csv"),
    ("CSV ragged", lambda: b"hour,distance,temp,carrier\n1,2\n", "text/csv", 400, "fields"),
    ("CSV bad bytes", lambda: b"hour,carrier\n1,\xff\n", "text/csv", 400, "UTF-8"),
    ("CSV text in a number", lambda: b"hour,distance,temp,carrier\nsix,2,3,DL\n", "text/csv", 400, "hour"),
    ("too large", lambda: b'{"inputs": {"carrier": ["' + b"x" * (MAX_BODY + 10) + b'"]}}', "application/json",
     413, "max_body"),
]


@pytest.mark.parametrize(("make", "content_type", "status", "says"), [c[1:] for c in INVOCATIONS],
                         ids=[c[0] for c in INVOCATIONS])
def test_a_hostile_scoring_request_gets_a_json_4xx_and_logs_nothing(
        strict: tuple[Project, BackgroundServer], make: Callable[[], bytes], content_type: str,
        status: int, says: str) -> None:
    project, server = strict
    request_id = uuid.uuid4().hex
    answer = post(server, "/invocations", make(), content_type, request_id)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert says in error["message"]
    assert {"error_code", "message"} <= set(error)
    assert answer.headers["x-request-id"] == request_id
    assert logged(project, request_id) == 0
    assert post(server, "/invocations", records()).status_code == 200  # still serving


LABELS: list[tuple[str, bytes, str]] = [
    ("target a list", b'[{"flight_id": "F1", "delayed": [1]}]', "not a scalar"),
    ("target an object", b'[{"flight_id": "F1", "delayed": {"v": 1}}]', "not a scalar"),
    ("target 7", b'[{"flight_id": "F1", "delayed": 7}]', "0 or 1"),
    ("id a list", b'[{"flight_id": ["F1"], "delayed": 1}]', "flight_id"),
    ("id null", b'[{"flight_id": null, "delayed": 1}]', "flight_id"),
    ("no id column", b'[{"id": "F1", "delayed": 1}]', "flight_id"),
    ("lone surrogate", b'[{"flight_id": "\\ud800", "delayed": 1}]', "not valid JSON"),
    ("not a list", b'{"flight_id": "F1"}', "labels"),
]


@pytest.mark.parametrize(("body", "says"), [c[1:] for c in LABELS], ids=[c[0] for c in LABELS])
def test_a_hostile_label_request_is_refused_whole(strict: tuple[Project, BackgroundServer], body: bytes,
                                                  says: str) -> None:
    project, server = strict
    before = len(project.logs.read_labels())
    answer = post(server, "/labels", body)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["message"]
    assert len(project.logs.read_labels()) == before


def test_labels_with_empty_targets_are_skipped_and_counted(strict: tuple[Project, BackgroundServer]) -> None:
    project, server = strict
    ids = [f"L-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    body = json.dumps([{"flight_id": ids[0], "delayed": 1}, {"flight_id": ids[1], "delayed": None},
                       {"flight_id": ids[2], "delayed": ""}, {"flight_id": ids[3]}]).encode()
    answer = post(server, "/labels", body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 1, "skipped": 3}
    labels = project.logs.read_labels()
    assert labels[labels["flight_id"].isin(ids)]["flight_id"].tolist() == [ids[0]]


def raw(server: BackgroundServer, data: bytes, *, wait: float = 5.0, close: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        sock.sendall(data)
        if close:
            return b""
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_a_body_that_never_finishes_is_cut_off_and_others_are_served(
        strict: tuple[Project, BackgroundServer]) -> None:
    _, server = strict
    results: list[int] = []

    def meanwhile() -> None:
        for _ in range(5):
            results.append(post(server, "/invocations", records()).status_code)
            time.sleep(0.1)

    other = threading.Thread(target=meanwhile)
    started = time.monotonic()
    other.start()
    reply = raw(server, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000\r\n\r\n{\"inputs\": ", wait=10)
    elapsed = time.monotonic() - started
    other.join(timeout=30)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"body_timeout" in reply
    assert elapsed < 5  # cut off after serving.body_timeout (1 s), connection closed
    assert results == [200] * 5


def test_headers_too_large_get_a_431(strict: tuple[Project, BackgroundServer]) -> None:
    _, server = strict
    reply = raw(server, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert b'"headers_too_large"' in reply
    assert httpx.get(f"{server.url}/ping", timeout=10).status_code == 200


def test_a_content_length_past_the_limit_is_refused_before_reading(
        strict: tuple[Project, BackgroundServer]) -> None:
    _, server = strict
    reply = raw(server, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 999999999\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_a_client_that_hangs_up_mid_body_costs_one_log_line(
        strict: tuple[Project, BackgroundServer], caplog: pytest.LogCaptureFixture) -> None:
    _, server = strict
    with caplog.at_level("INFO", logger="modelloop.serving"):
        raw(server, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 500\r\n\r\n{\"inputs\"", close=True)
        time.sleep(0.5)
    lines = [r for r in caplog.records if r.name.startswith("modelloop")]
    assert len(lines) <= 1 and all(r.exc_info is None for r in lines)
    assert post(server, "/invocations", records()).status_code == 200


def test_a_bad_request_id_header_is_refused(strict: tuple[Project, BackgroundServer]) -> None:
    _, server = strict
    answer = httpx.post(f"{server.url}/invocations", content=records(),
                        headers={"content-type": "application/json", "x-request-id": "a b\tc" * 40},
                        timeout=10)
    assert answer.status_code == 400
    assert answer.json()["problem"] == "bad_request_id"


def test_monitoring_runs_after_the_onslaught(strict: tuple[Project, BackgroundServer]) -> None:
    project, server = strict
    for i in range(30):
        body = json.dumps({"dataframe_records": [{**ROW, "flight_id": f"M{i}"}]}).encode()
        assert post(server, "/invocations", body).status_code == 200
    outcome = project.monitor(retrain=False)
    assert outcome.result.n_rows >= 30
