"""Alert webhooks through the outbox, against a real HTTP receiver on 127.0.0.1: signed bodies a
receiver can verify, slack and json formats, retries with backoff until the receiver takes the
event, a dead receiver given up on after max_attempts, and a monitoring run a hanging receiver
cannot hold up."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelloop.config import AlertsConfig, parse_config
from modelloop.errors import ConfigError
from modelloop.orchestration.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertEvent,
    deliver_pending,
    enqueue,
    sign,
    verify_signature,
)
from modelloop.project import Project
from modelloop.store import MetadataDB
from tests.conftest import AS_OF, RAW_CONFIG, serve_rows

SECRET = "s3cret"


@dataclass
class Receiver:
    """What the loopback server got, and how it answers: `statuses` in turn (then 200), each
    after `delay` seconds."""

    url: str
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            time.sleep(state.delay)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.delay = 0.0
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def db(tmp_path: Path) -> MetadataDB:
    return MetadataDB(f"sqlite:///{tmp_path / 'modelloop.db'}", "flights")


def _config(url: str, **settings: Any) -> AlertsConfig:
    hook = {"url": url, **settings.pop("hook", {})}
    return AlertsConfig.model_validate({"webhooks": [hook], "backoff": "10ms", **settings})


def _alert(db: MetadataDB, subject: str = "temp") -> dict[str, Any]:
    from datetime import datetime

    alert_id = db.record_alert("drift", subject=subject, as_of=datetime(2013, 6, 1),
                               detail={"message": f"drift on {subject}: PSI 0.41", "report": "r.html"})
    return db.get_alert(alert_id)


def _until_settled(db: MetadataDB, config: AlertsConfig, passes: int = 30) -> list[dict[str, Any]]:
    """Deliver again and again (bounded) until nothing is pending."""
    for _ in range(passes):
        deliver_pending(db, config, budget_seconds=2.0)
        if not db.deliveries(status="pending"):
            break
        time.sleep(0.02)
    return db.deliveries()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_signed_json_event_reaches_the_receiver_and_verifies(db: MetadataDB, receiver: Receiver) -> None:
    config = _config(receiver.url, hook={"secret": SECRET})
    alert = _alert(db)
    enqueue(db, config, AlertEvent.OPENED, alert)
    report = deliver_pending(db, config, budget_seconds=5)
    assert report.delivered == 1 and report.failed == report.retrying == 0
    [(headers, body)] = receiver.got
    assert json.loads(body) == {
        "event": "alert.opened",
        "model": "flights",
        "alert": {"id": alert["id"], "kind": "drift", "subject": "temp", "status": "open",
                  "as_of": "2013-06-01T00:00:00", "message": "drift on temp: PSI 0.41",
                  "report": "r.html"},
    }
    timestamp, signature = headers[TIMESTAMP_HEADER.lower()], headers[SIGNATURE_HEADER.lower()]
    assert signature.startswith("sha256=") and abs(int(timestamp) - time.time()) < 60
    assert verify_signature(SECRET, timestamp, body, signature)
    assert not verify_signature("wrong", timestamp, body, signature)
    assert not verify_signature(SECRET, timestamp, body + b" ", signature)  # tampered
    assert not verify_signature(SECRET, timestamp, body, signature, now=int(timestamp) + 3600)  # replayed
    [row] = db.deliveries()
    assert row["status"] == "delivered" and row["attempts"] == 1 and row["delivered_at"]
    assert deliver_pending(db, config, budget_seconds=5).delivered == 0  # sent once


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", "{}") == f"sha256={expected}"


def test_a_slack_event_is_one_readable_line_and_unsigned_without_a_secret(
    db: MetadataDB, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(receiver.url, hook={"format": "slack"})
    enqueue(db, config, AlertEvent.OPENED, _alert(db, "missing:temp"))
    deliver_pending(db, config, budget_seconds=5)
    [(headers, body)] = receiver.got
    text = json.loads(body)["text"]
    assert set(json.loads(body)) == {"text"} and "\n" not in text
    for part in ("flights", "drift", "missing:temp", "opened", "PSI 0.41"):
        assert part in text
    assert SIGNATURE_HEADER.lower() not in headers


def test_a_secret_from_the_environment_signs_and_a_missing_one_sends_nothing(
    db: MetadataDB, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(receiver.url, hook={"secret_env": "HOOK_SECRET"}, max_attempts=1)
    enqueue(db, config, AlertEvent.OPENED, _alert(db))
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    assert deliver_pending(db, config, budget_seconds=5).failed == 1
    assert receiver.got == [] and "HOOK_SECRET" in db.deliveries()[0]["last_error"]
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    enqueue(db, config, AlertEvent.OPENED, _alert(db, "distance"))
    deliver_pending(db, config, budget_seconds=5)
    [(headers, body)] = receiver.got
    assert verify_signature(SECRET, headers["x-modelloop-timestamp"], body,
                            headers["x-modelloop-signature"])


def test_a_receiver_failing_twice_is_retried_with_backoff_then_delivered(
    db: MetadataDB, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    config = _config(receiver.url, backoff="200ms")
    enqueue(db, config, AlertEvent.RESOLVED, _alert(db))
    first = deliver_pending(db, config, budget_seconds=5)
    assert first.retrying == 1 and len(receiver.got) == 1
    [row] = db.deliveries()
    assert row["status"] == "pending" and row["attempts"] == 1 and "HTTP 500" in row["last_error"]
    assert deliver_pending(db, config, budget_seconds=5).retrying == 0  # not due yet: backoff
    assert len(receiver.got) == 1
    [row] = _until_settled(db, config)
    assert row["status"] == "delivered" and row["attempts"] == 3
    assert len(receiver.got) == 3 and len({body for _, body in receiver.got}) == 1  # same body


def test_a_dead_receiver_ends_failed_after_max_attempts_without_raising(db: MetadataDB) -> None:
    config = _config(f"http://127.0.0.1:{_free_port()}/hook", max_attempts=3)
    enqueue(db, config, AlertEvent.OPENED, _alert(db))
    [row] = _until_settled(db, config)
    assert row["status"] == "failed" and row["attempts"] == 3 and row["last_error"]
    assert deliver_pending(db, config, budget_seconds=1).to_dict() == {
        "delivered": 0, "retrying": 0, "failed": 0, "left": 0}  # given up: never sent again


def test_a_hanging_receiver_costs_at_most_the_budget(db: MetadataDB, receiver: Receiver) -> None:
    receiver.delay = 10.0
    config = _config(receiver.url, timeout="5s")
    for subject in ("a", "b", "c"):
        enqueue(db, config, AlertEvent.OPENED, _alert(db, subject))
    started = time.monotonic()
    report = deliver_pending(db, config, budget_seconds=0.5)
    assert time.monotonic() - started < 2.0
    assert report.retrying == 1 and report.left == 2
    assert "no answer" in db.deliveries(status="pending")[-1]["last_error"]


def test_a_monitoring_run_is_not_held_up_by_a_hanging_receiver(
    make_project: Callable[..., Project], flights: pd.DataFrame, receiver: Receiver
) -> None:
    raw = copy.deepcopy(RAW_CONFIG)
    raw["alerts"] = {"webhooks": [{"url": receiver.url}], "timeout": "5s"}
    project = make_project(config=parse_config(raw))
    project.train(as_of=AS_OF - timedelta(days=10))
    recent = flights[flights["sched_dep"] > AS_OF - timedelta(days=7)].copy()
    recent["distance"] = recent["distance"] * 3 + 500
    recent["temp"] = recent["temp"] + 25
    serve_rows(project, recent.drop(columns=["delayed"]), "req-1")
    receiver.delay = 30.0
    started = time.monotonic()
    outcome = project.monitor(as_of=AS_OF, retrain=False)
    took = time.monotonic() - started
    assert outcome.alerts and len(receiver.got) >= 1
    # Sending each of its events in turn to a receiver that never answers would take 5 s each.
    assert took < 15.0, took
    assert len(project.db.deliveries()) == len(outcome.alerts)
    assert project.db.deliveries(status="pending")  # left for `up` or `alerts deliver`


@pytest.mark.parametrize(
    ("hook", "field", "words"),
    [
        ({"url": "hooks.example.com/x"}, "alerts.webhooks.0.url", "http:// or https://"),
        ({"url": "ftp://example.com/x"}, "alerts.webhooks.0.url", "http:// or https://"),
        ({"url": "https://example.com", "format": "teams"}, "alerts.webhooks.0.format", "slack"),
        ({"url": "https://example.com", "secret": "a", "secret_env": "B"}, "alerts.webhooks.0",
         "not both"),
    ],
)
def test_a_bad_webhook_in_the_project_file_names_the_field(
    hook: dict[str, Any], field: str, words: str
) -> None:
    raw = copy.deepcopy(RAW_CONFIG)
    raw["alerts"] = {"webhooks": [hook]}
    with pytest.raises(ConfigError) as error:
        parse_config(raw, "modelloop.yaml")
    assert field in str(error.value) and words in str(error.value)
    assert "modelloop.yaml" in str(error.value)


def test_a_secret_never_shows_in_the_config_dump() -> None:
    raw = copy.deepcopy(RAW_CONFIG)
    raw["alerts"] = {"webhooks": [{"url": "https://example.com/h", "secret": SECRET}]}
    assert SECRET not in parse_config(raw).model_dump_json()


def test_the_upkeep_of_up_delivers_in_its_own_thread_and_never_waits(
    db: MetadataDB, receiver: Receiver
) -> None:
    import yaml

    from modelloop.orchestration import Ledger
    from modelloop.orchestration.runtime import Runtime

    raw = yaml.safe_load((Path(__file__).parents[2] / "src/modelloop/examples/flights.yaml").read_text())
    raw["alerts"] = {"webhooks": [{"url": receiver.url, "secret": SECRET}], "timeout": "5s"}
    config = parse_config(raw)
    ledger = Ledger(db, ttl=30)
    runtime = Runtime(config, run=lambda *_: {}, ledger=ledger, db=db)
    enqueue(db, config.alerts, AlertEvent.OPENED, _alert(db))
    receiver.delay = 1.0
    started = time.monotonic()
    runtime.upkeep()
    runtime.upkeep()  # a tick while the last pass is still sending starts no second one
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 10
    while db.deliveries(status="delivered") == [] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [d["status"] for d in db.deliveries()] == ["delivered"] and len(receiver.got) == 1
    runtime.stop(grace=2)
