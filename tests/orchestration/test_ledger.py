"""The run ledger: every run recorded with its outcome; one running instance per pipeline across
processes sharing the database; a run whose process died is failed, never left `running`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelloop.errors import DataError
from modelloop.orchestration import Interrupted, Ledger, Origin, RunRequest, RunStatus, Skipped
from modelloop.orchestration.ledger import SKIPPED_EXIT_CODE, holder_gone, holder_id
from modelloop.store import MetadataDB
from tests.postgres import BACKENDS, metadata_url

AS_OF = datetime(2013, 6, 30)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Leases are compare-and-set on SQLite and on PostgreSQL alike: every check runs on both."""
    yield from metadata_url(request.param, tmp_path / "modelloop.db")


@pytest.fixture
def db(url: str) -> MetadataDB:
    return MetadataDB(url, "flights")


def test_a_run_is_recorded_running_then_succeeded_with_what_it_produced(db: MetadataDB) -> None:
    ledger = Ledger(db, ttl=30)
    request = RunRequest(origin=Origin.SCHEDULE, trigger="schedule 0 6 * * *")
    with ledger.run("train", request, as_of=AS_OF, params={"gate": True}) as run:
        inside = db.get_run(run.id)
        assert inside["status"] == "running" and inside["holder"] == ledger.holder
        assert db.lease("train")["run_id"] == run.id
        run.produced["version"] = 3
    done = db.get_run(run.id)
    assert done["status"] == RunStatus.SUCCEEDED
    assert done["detail"] == {"version": 3}
    assert done["origin"] == "schedule" and done["trigger"] == "schedule 0 6 * * *"
    assert done["params"] == {"gate": True} and done["as_of"] == AS_OF.isoformat()
    assert done["finished_at"] >= done["started_at"]
    assert db.lease("train") is None  # released


def test_a_failure_is_recorded_with_its_error_and_reraised(db: MetadataDB) -> None:
    ledger = Ledger(db, ttl=30)
    with pytest.raises(DataError), ledger.run("train", RunRequest()) as run:
        raise DataError("column 'hour' has nulls", report={"problems": [{"column": "hour"}]})
    failed = db.get_run(run.id)
    assert failed["status"] == "failed" and failed["error"] == "column 'hour' has nulls"
    assert failed["detail"]["report"] == {"problems": [{"column": "hour"}]}
    assert db.lease("train") is None


def test_an_interrupted_run_says_so(db: MetadataDB) -> None:
    ledger = Ledger(db, ttl=30)
    with pytest.raises(Interrupted), ledger.run("monitor", RunRequest()) as run:
        raise Interrupted("SIGTERM")
    assert db.get_run(run.id)["status"] == "interrupted"


def test_a_second_attempt_while_held_is_skipped_naming_the_holder(db: MetadataDB) -> None:
    first, second = Ledger(db, ttl=30), Ledger(db, ttl=30)
    with first.run("train", RunRequest()) as running:
        with pytest.raises(Skipped) as caught, second.run("train", RunRequest(origin=Origin.API)):
            pytest.fail("the body of a skipped run must not run")
        # Another pipeline is not held back.
        with second.run("monitor", RunRequest()):
            pass
    assert caught.value.exit_code == SKIPPED_EXIT_CODE == 75
    skipped = db.get_run(caught.value.run_id)
    assert skipped["status"] == "skipped" and skipped["detail"]["held_by"] == running.id
    assert f"run {running.id}" in skipped["error"] and first.holder in skipped["error"]
    assert db.get_run(running.id)["status"] == "succeeded"


def test_the_same_key_twice_is_one_run(db: MetadataDB) -> None:
    """Two processes firing the same schedule minute: the second is skipped, even after the
    first has finished."""
    ledger = Ledger(db, ttl=30)
    key = "schedule monitor 2026-11-30T06:00:00+00:00"
    with ledger.run("monitor", RunRequest(origin=Origin.SCHEDULE, key=key)) as first:
        pass
    with pytest.raises(Skipped) as caught, ledger.run("monitor", RunRequest(origin=Origin.SCHEDULE, key=key)):
        pytest.fail("ran twice")
    again = db.get_run(caught.value.run_id)
    assert again["status"] == "skipped" and again["detail"]["same_as"] == first.id
    # Another pipeline may use the same key text.
    with ledger.run("train", RunRequest(key=key)):
        pass


def test_an_expired_lease_from_another_machine_is_taken_and_its_run_failed(db: MetadataDB) -> None:
    dead = db.start_run("train", as_of=AS_OF, trigger="schedule", origin="schedule", holder="elsewhere:1:x")
    assert db.take_lease("train", holder="elsewhere:1:x", run_id=dead, ttl=-5, replacing=None)
    assert db.lease("train")["expires_at"] < datetime.now(UTC).replace(tzinfo=None).isoformat()
    seen: list[dict[str, Any]] = []
    ledger = Ledger(db, ttl=30, on_failed=seen.append)
    with ledger.run("train", RunRequest()) as run:
        assert db.lease("train")["run_id"] == run.id
    failed = db.get_run(dead)
    assert failed["status"] == "failed" and "elsewhere:1:x" in failed["error"]
    assert [r["id"] for r in seen] == [dead]


def test_a_live_lease_from_another_machine_is_respected(db: MetadataDB) -> None:
    other = db.start_run("train", as_of=AS_OF, trigger="x", holder="elsewhere:1:x")
    assert db.take_lease("train", holder="elsewhere:1:x", run_id=other, ttl=60, replacing=None)
    with pytest.raises(Skipped), Ledger(db, ttl=30).run("train", RunRequest()):
        pass
    assert db.get_run(other)["status"] == "running"
    assert Ledger(db, ttl=30).reap() == []  # alive on its machine: left alone


_HOLD = textwrap.dedent(
    """
    import sys, time
    from modelloop.orchestration import Ledger, RunRequest, Origin
    from modelloop.store import MetadataDB
    db = MetadataDB(sys.argv[1], "flights")
    with Ledger(db, ttl=float(sys.argv[2])).run("train", RunRequest(origin=Origin.SCHEDULE)) as run:
        print(run.id, flush=True)
        time.sleep(120)
    """
)


def _holding_process(url: str, ttl: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, url, str(ttl)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def test_a_run_whose_process_was_killed_is_failed_and_its_lease_taken_at_once(
    url: str, db: MetadataDB
) -> None:
    proc, held = _holding_process(url, ttl=60)
    try:
        with pytest.raises(Skipped), Ledger(db, ttl=30).run("train", RunRequest()):
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # Same machine, process gone: no need to wait out the 60 s lease.
        assert holder_gone(db.get_run(held)["holder"])
        with Ledger(db, ttl=30).run("train", RunRequest()) as run:
            pass
        assert db.get_run(held)["status"] == "failed"
        assert "stopped without finishing" in db.get_run(held)["error"]
        assert db.get_run(run.id)["status"] == "succeeded"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_reap_fails_a_dead_processes_running_run_without_anyone_asking_for_the_lease(
    url: str, db: MetadataDB
) -> None:
    proc, held = _holding_process(url, ttl=60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    seen: list[int] = []
    assert Ledger(db, ttl=30, on_failed=lambda r: seen.append(r["id"])).reap() == [held]
    assert db.get_run(held)["status"] == "failed" and seen == [held]


def test_the_lease_is_renewed_while_a_long_run_runs(db: MetadataDB) -> None:
    ledger = Ledger(db, ttl=2)
    with ledger.run("train", RunRequest()):
        first = db.lease("train")["expires_at"]
        time.sleep(1.6)
        assert db.lease("train")["expires_at"] > first
        with pytest.raises(Skipped), Ledger(db, ttl=2).run("train", RunRequest()):
            pass


_RACE = textwrap.dedent(
    """
    import sys, time
    from modelloop.orchestration import Ledger, RunRequest, Skipped
    from modelloop.store import MetadataDB
    db = MetadataDB(sys.argv[1], "flights")
    start = float(sys.argv[2])
    time.sleep(max(0.0, start - time.time()))
    try:
        with Ledger(db, ttl=30).run("train", RunRequest()):
            time.sleep(1.5)
        print("ran")
    except Skipped:
        print("skipped")
    """
)


def test_processes_racing_for_one_pipeline_run_it_once(url: str, db: MetadataDB) -> None:
    db.runs()  # migrate once before the race
    start = time.time() + 2.0
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACE, url, str(start)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outputs == ["ran", "skipped", "skipped", "skipped"]
    statuses = sorted(r["status"] for r in db.runs())
    assert statuses == ["skipped", "skipped", "skipped", "succeeded"]


def test_holder_ids_name_this_host_and_process() -> None:
    me = holder_id()
    assert me.split(":")[1] == str(os.getpid())
    assert not holder_gone(me)
    assert holder_gone(me.rsplit(":", 1)[0] + ":another-life")  # same pid, other process
    assert not holder_gone("another-host:1:abc")  # judged by expiry alone
