"""The runtime of `modelloop up` on a real ledger: schedules fire once per fire time whatever the
number of processes, requests coalesce, failed runs are retried with backoff, a stop records an
unfinished run as interrupted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelloop.config import parse_config
from modelloop.orchestration import AlertKind, Ledger, Origin, RunRequest
from modelloop.orchestration.runtime import Runtime
from modelloop.store import MetadataDB

EXAMPLE = Path(__file__).parents[2] / "src/modelloop/examples/flights.yaml"


def _config(**extra: Any) -> Any:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.update(extra)
    return parse_config(raw)


@pytest.fixture
def db(tmp_path: Path) -> MetadataDB:
    return MetadataDB(f"sqlite:///{tmp_path / 'modelloop.db'}", "flights")


def _runner(ledger: Ledger, body: Callable[[str], None]) -> Callable[..., dict[str, Any]]:
    def run(pipeline: str, request: RunRequest, as_of: datetime | None) -> dict[str, Any]:
        with ledger.run(pipeline, request, as_of=as_of) as record:
            body(pipeline)
            record.produced["ok"] = True
        return record.produced

    return run


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for runtime in made:
        runtime.stop(grace=2)


def _wait(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_schedules_are_jobs_in_the_projects_time_zone(db: MetadataDB, runtimes: list[Runtime]) -> None:
    config = _config(schedule={"monitor": "*/5 * * * *", "train": "@weekly"},
                     schedule_timezone="Europe/Paris")
    ledger = Ledger(db, ttl=30)
    runtime = Runtime(config, run=_runner(ledger, lambda _: None), ledger=ledger, db=db)
    runtimes.append(runtime)
    runtime.start()
    jobs = {job["id"]: job for job in runtime.status()["jobs"]}
    assert set(jobs) == {"schedule-monitor", "schedule-train", "upkeep"}
    weekly = datetime.fromisoformat(jobs["schedule-train"]["next_run_at"])
    assert weekly.utcoffset() is not None and weekly.strftime("%a %H:%M") == "Sun 00:00"
    assert weekly.utcoffset().total_seconds() == 3600  # Paris in winter, not UTC
    assert datetime.fromisoformat(jobs["schedule-monitor"]["next_run_at"]).minute % 5 == 0


def test_one_fire_time_is_one_run_across_processes(db: MetadataDB, runtimes: list[Runtime]) -> None:
    config = _config(schedule={"monitor": "* * * * *"})
    ran: list[str] = []
    made = []
    for _ in range(2):  # two `modelloop up` on one project: each has its own ledger holder
        ledger = Ledger(db, ttl=30)
        # As if on two machines: a holder on this host with another token reads as a dead process.
        ledger.holder = f"machine-{len(made)}:1:test"
        runtime = Runtime(config, run=_runner(ledger, ran.append), ledger=ledger, db=db)
        runtime.start()
        made.append(runtime)
    runtimes.extend(made)
    for runtime in made:
        runtime._scheduled("monitor", "* * * * *")  # the minute fires in both
    _wait(lambda: len(db.runs()) == 2 and all(r["status"] != "running" for r in db.runs()))
    assert ran == ["monitor"]
    assert sorted(r["status"] for r in db.runs()) == ["skipped", "succeeded"]
    assert all(r["origin"] == "schedule" for r in db.runs())


def test_requests_for_a_waiting_pipeline_join_it(db: MetadataDB, runtimes: list[Runtime]) -> None:
    release = threading.Event()
    ledger = Ledger(db, ttl=30)
    runtime = Runtime(_config(), run=_runner(ledger, lambda _: release.wait(10)), ledger=ledger, db=db)
    runtimes.append(runtime)
    runtime.start()
    api = RunRequest(origin=Origin.API, trigger="POST /pipelines/train")
    assert runtime.submit("train", api)
    _wait(lambda: "train" in runtime.status()["running"])
    assert runtime.submit("train", api)  # queued behind the running one
    assert not runtime.submit("train", api)  # joins the queued one
    release.set()
    _wait(lambda: len(db.runs()) == 2 and all(r["status"] == "succeeded" for r in db.runs()))
    with pytest.raises(ValueError, match="unknown pipeline 'deploy'"):
        runtime.submit("deploy", api)


def test_a_failed_scheduled_run_is_retried_then_alerts(db: MetadataDB, runtimes: list[Runtime]) -> None:
    config = _config(retries={"count": 1, "backoff": "200ms"})

    def boom(_: str) -> None:
        raise RuntimeError("the data source is down")

    ledger = Ledger(db, ttl=30)
    runtime = Runtime(config, run=_runner(ledger, boom), ledger=ledger, db=db, upkeep_every=0.2)
    runtimes.append(runtime)
    runtime.start()
    runtime.submit("monitor", RunRequest(origin=Origin.SCHEDULE, trigger="schedule"))
    _wait(lambda: db.open_alerts(AlertKind.PIPELINE_FAILED) != [])
    first, retry = sorted(db.runs(), key=lambda r: r["id"])
    assert first["status"] == retry["status"] == "failed"
    assert retry["origin"] == "retry" and retry["retry_of"] == first["id"] and retry["attempt"] == 2
    [alert] = db.open_alerts(AlertKind.PIPELINE_FAILED)
    assert alert["detail"]["run"] == retry["id"] and "the data source is down" in alert["detail"]["error"]
    time.sleep(0.6)
    assert len(db.runs()) == 2 and len(db.open_alerts()) == 1  # no retry of the retry, one alert


def test_a_stop_records_an_unfinished_run_as_interrupted(db: MetadataDB) -> None:
    release = threading.Event()
    ledger = Ledger(db, ttl=30)
    runtime = Runtime(_config(), run=_runner(ledger, lambda _: release.wait(30)), ledger=ledger, db=db)
    runtime.start()
    runtime.submit("train", RunRequest(origin=Origin.API))
    _wait(lambda: "train" in runtime.status()["running"])
    started = time.monotonic()
    [interrupted] = runtime.stop(grace=0.5)
    assert time.monotonic() - started < 5
    run = db.get_run(interrupted)
    assert run["status"] == "interrupted" and "stopped before the run finished" in run["error"]
    assert db.lease("train") is None  # given up: the next process need not wait it out
    release.set()
    time.sleep(0.3)
    assert db.get_run(interrupted)["status"] == "interrupted"  # the late finish changes nothing
    assert not runtime.submit("train", RunRequest())  # stopping: nothing new is queued
