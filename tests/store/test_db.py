import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from modelloop.errors import NotFound
from modelloop.store import MetadataDB
from modelloop.store import db as db_module
from tests.postgres import BACKENDS, metadata_url

AS_OF = datetime(2013, 6, 30)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every check runs on the embedded SQLite file and on a real PostgreSQL database."""
    yield from metadata_url(request.param, tmp_path / "home" / "modelloop.db")


@pytest.fixture
def db(url: str) -> MetadataDB:
    return MetadataDB(url, "flights")


def test_constructing_touches_nothing_and_first_use_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "modelloop.db"
    db = MetadataDB(f"sqlite:///{path}", "flights")
    assert not path.exists()
    assert db.runs() == []
    assert path.exists()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    MetadataDB(f"sqlite:///{tmp_path / 'home' / 'modelloop.db'}", "flights").set_state("k", 1)
    with sqlite3.connect(tmp_path / "home" / "modelloop.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_runs_start_running_and_finish_with_their_detail(db: MetadataDB) -> None:
    first = db.start_run("train", as_of=AS_OF, trigger="manual")
    second = db.start_run("monitor", as_of=None, trigger="schedule")
    db.finish_run(first, status="succeeded", detail={"version": 3, "score": np.float32(0.5)})
    runs = db.runs()
    assert [r["id"] for r in runs] == [second, first]  # newest first
    newest, oldest = runs
    assert newest["status"] == "running" and newest["finished_at"] is None
    assert newest["as_of"] is None and newest["trigger"] == "schedule"
    assert oldest["status"] == "succeeded" and oldest["kind"] == "train"
    assert oldest["detail"] == {"version": 3, "score": 0.5}
    assert oldest["as_of"] == "2013-06-30T00:00:00"
    for key in ("started_at", "finished_at", "created_at"):
        datetime.fromisoformat(oldest[key])
    assert len(db.runs(limit=1)) == 1


def test_finishing_an_unknown_run_says_so(db: MetadataDB) -> None:
    with pytest.raises(NotFound, match="run 42"):
        db.finish_run(42, status="failed", detail={})


def test_decisions_newest_first_and_by_version(db: MetadataDB) -> None:
    db.record_decision(2, outcome="rejected", reasons=["worse on replay"], metrics={"auc": 0.61},
                       as_of=AS_OF)
    db.record_decision(3, outcome="promoted", reasons=[], metrics={"auc": 0.72}, as_of=None)
    db.record_decision(2, outcome="approved", reasons=("a human said so",), metrics={},
                       as_of=AS_OF + timedelta(days=1))
    assert [(d["version"], d["outcome"]) for d in db.decisions()] == [
        (2, "approved"), (3, "promoted"), (2, "rejected"),
    ]
    older = db.decisions(version=2)[-1]
    assert older["reasons"] == ["worse on replay"] and older["metrics"] == {"auc": 0.61}
    assert older["as_of"] == AS_OF.isoformat() and "created_at" in older
    assert db.decisions(version=3)[0]["as_of"] is None
    assert len(db.decisions(limit=2)) == 2


def test_monitoring_last_is_the_latest_as_of_and_history_runs_oldest_first(
    db: MetadataDB,
) -> None:
    assert db.last_monitoring() is None and db.monitoring_history() == []
    for week in (1, 3, 2):  # a backfill arrives out of order
        db.record_monitoring({"week": week, "drift": {"share": 0.1 * week}},
                             as_of=AS_OF + timedelta(weeks=week))
    last = db.last_monitoring()
    assert last is not None and last["result"]["week"] == 3
    assert last["as_of"] == (AS_OF + timedelta(weeks=3)).isoformat()
    assert [m["result"]["week"] for m in db.monitoring_history()] == [1, 2, 3]
    assert [m["result"]["week"] for m in db.monitoring_history(limit=2)] == [2, 3]


def test_alerts_open_then_resolve_by_kind(db: MetadataDB) -> None:
    drift = db.record_alert("drift", as_of=AS_OF, detail={"drifted": ["dep_hour"]})
    db.record_alert("drift", as_of=AS_OF + timedelta(days=1), detail={})
    performance = db.record_alert("performance", as_of=AS_OF, detail={"auc": 0.6})
    opened = db.open_alerts()
    assert {a["id"] for a in opened} == {drift, drift + 1, performance}
    assert all(a["status"] == "open" and a["resolved_as_of"] is None for a in opened)
    assert opened[0]["detail"] in ({"drifted": ["dep_hour"]}, {"auc": 0.6})

    assert db.resolve_alerts("drift", as_of=AS_OF + timedelta(days=7)) == 2
    assert db.resolve_alerts("drift", as_of=AS_OF + timedelta(days=8)) == 0
    assert [a["kind"] for a in db.open_alerts()] == ["performance"]


def test_last_fired_trigger_ignores_held_back_ones(db: MetadataDB) -> None:
    assert db.last_fired_trigger() is None
    db.record_trigger("drift", as_of=AS_OF, detail={"kinds": ["drift"]}, fired=True)
    db.record_trigger("drift", as_of=AS_OF + timedelta(days=2), detail={"skipped": "cooldown"},
                      fired=False)
    db.record_trigger("manual", as_of=AS_OF - timedelta(days=5), detail={}, fired=True)
    last = db.last_fired_trigger()
    assert last is not None
    assert (last["reason"], last["as_of"], last["fired"]) == ("drift", AS_OF.isoformat(), True)
    assert last["detail"] == {"kinds": ["drift"]}


def test_a_long_trigger_reason_is_kept_whole(db: MetadataDB) -> None:
    reason = "monitoring alert at 2013-06-30: " + "; ".join(["drift: dep_hour (PSI 0.4)"] * 40)
    db.record_trigger(reason, as_of=AS_OF, detail={}, fired=True)
    run = db.start_run("train", as_of=AS_OF, trigger=reason)
    fired = db.last_fired_trigger()
    assert fired is not None and fired["reason"] == reason
    assert db.runs()[0]["id"] == run and db.runs()[0]["trigger"] == reason


def test_state_is_an_upserted_json_value(db: MetadataDB) -> None:
    assert db.get_state("contract") is None
    db.set_state("contract", {"columns": ["a", "b"], "as_of": AS_OF})
    assert db.get_state("contract") == {"columns": ["a", "b"], "as_of": AS_OF.isoformat()}
    db.set_state("contract", [1, np.int64(2)])
    assert db.get_state("contract") == [1, 2]
    db.set_state("flag", False)
    assert db.get_state("flag") is False
    assert db.get_state("contract") == [1, 2]


def test_aware_times_are_stored_as_utc(db: MetadataDB) -> None:
    aware = datetime(2013, 6, 30, 12, tzinfo=UTC).astimezone()
    db.record_alert("drift", as_of=aware, detail={})
    assert db.open_alerts()[0]["as_of"] == "2013-06-30T12:00:00"


def test_models_share_a_database_without_seeing_each_other(url: str) -> None:
    flights, taxis = MetadataDB(url, "flights"), MetadataDB(url, "taxis")
    flights.start_run("train", as_of=None, trigger="manual")
    flights.record_alert("drift", as_of=AS_OF, detail={})
    flights.record_trigger("drift", as_of=AS_OF, detail={}, fired=True)
    flights.set_state("k", "flights")
    taxis.set_state("k", "taxis")
    assert taxis.runs() == [] and taxis.open_alerts() == [] and taxis.last_fired_trigger() is None
    assert taxis.resolve_alerts("drift", as_of=AS_OF) == 0
    assert len(flights.open_alerts()) == 1
    assert (flights.get_state("k"), taxis.get_state("k")) == ("flights", "taxis")
    with pytest.raises(NotFound):
        taxis.finish_run(flights.runs()[0]["id"], status="failed", detail={})


def test_two_objects_on_one_database_write_at_once(url: str) -> None:
    # The server and the CLI: separate engines, separate connections, one database.
    server, cli = MetadataDB(url, "flights"), MetadataDB(url, "flights")
    errors: list[BaseException] = []

    def write(db: MetadataDB, name: str) -> None:
        try:
            for i in range(40):
                run = db.start_run("monitor", as_of=AS_OF, trigger=name)
                db.record_monitoring({"by": name, "i": i}, as_of=AS_OF + timedelta(hours=i))
                db.set_state("last_writer", name)
                db.finish_run(run, status="succeeded", detail={"i": i})
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(d, n)) for d, n in ((server, "server"),
                                                                        (cli, "cli"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    runs = server.runs(limit=1000)
    assert len(runs) == 80 and all(r["status"] == "succeeded" for r in runs)
    assert len(cli.monitoring_history(limit=1000)) == 80
    assert cli.get_state("last_writer") in ("server", "cli")


def test_two_processes_write_the_same_database_at_once(url: str) -> None:
    code = f"""
import sys
from datetime import datetime
from modelloop.store import MetadataDB
db = MetadataDB({url!r}, "flights")
for i in range(30):
    db.record_alert(sys.argv[1], as_of=datetime(2013, 6, 30), detail={{"i": i}})
    db.set_state("writer", sys.argv[1])
"""
    env = {**os.environ, "PYTHONPATH": str(Path(db_module.__file__).parents[2])}
    processes = [
        subprocess.Popen([sys.executable, "-c", code, kind], env=env, stderr=subprocess.PIPE)
        for kind in ("drift", "performance")
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
    kinds = [a["kind"] for a in MetadataDB(url, "flights").open_alerts()]
    assert sorted(set(kinds)) == ["drift", "performance"] and len(kinds) == 60


def test_an_in_memory_database_is_shared_across_threads() -> None:
    db = MetadataDB("sqlite://", "flights")
    db.set_state("k", 1)
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(db.get_state("k")))
    thread.start()
    thread.join()
    assert seen == [1]


def test_a_delivery_is_claimed_by_one_deliverer_at_a_time(db: MetadataDB) -> None:
    alert = db.record_alert("drift", subject="temp", as_of=AS_OF, detail={})
    delivery = db.enqueue_delivery(alert, event="alert.opened", url="http://h/x", payload="{}")
    now = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
    assert [d["id"] for d in db.due_deliveries(now)] == [delivery]
    hold = now + timedelta(seconds=60)
    assert db.claim_delivery(delivery, attempts=0, now=now, hold_until=hold)
    assert not db.claim_delivery(delivery, attempts=0, now=now, hold_until=hold)  # taken
    assert db.due_deliveries(now) == []  # held while it is being sent
    db.finish_delivery(delivery, status="pending", attempts=1, next_attempt_at=now, error="HTTP 500")
    assert not db.claim_delivery(delivery, attempts=0, now=now, hold_until=hold)  # stale read
    assert db.claim_delivery(delivery, attempts=1, now=now, hold_until=hold)
    db.finish_delivery(delivery, status="delivered", attempts=2)
    [row] = db.deliveries(alert_id=alert)
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 2, None)


def test_alert_counts_and_lists_by_status(db: MetadataDB) -> None:
    temp = db.record_alert("drift", subject="temp", as_of=AS_OF, detail={})
    db.record_alert("drift", subject="distance", as_of=AS_OF, detail={})
    auc = db.record_alert("performance", subject="roc_auc", as_of=AS_OF, detail={})
    assert db.ack_alert(temp, by="ana", reason="expected") and not db.ack_alert(temp, by="bo", reason="x")
    assert db.resolve_alert(auc, as_of=AS_OF + timedelta(days=7))
    assert not db.resolve_alert(auc, as_of=AS_OF + timedelta(days=8))  # closed already
    assert db.alert_counts() == {"open": {"drift": 1}, "acknowledged": {"drift": 1}}
    assert [a["id"] for a in db.alerts(status="resolved")] == [auc]
    assert {a["subject"] for a in db.unresolved_alerts("drift")} == {"temp", "distance"}
