"""Alerts per (kind, subject) with a lifecycle: a persisting breach is one alert seen again, it
resolves only when a run at the same or a later as-of judged its pair clean, re-running an as-of
changes nothing, a person can acknowledge an open alert, and opening or resolving queues a
webhook event (nothing is sent by the policy itself)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelloop.config import AlertsConfig
from modelloop.errors import NotFound, UsageError
from modelloop.monitoring.breaches import Breach, BreachKind
from modelloop.monitoring.pipeline import MonitoringResult
from modelloop.orchestration import AlertKind, apply_alerts
from modelloop.orchestration.alerts import AlertStatus, acknowledge, failure_alert
from modelloop.store import MetadataDB

T0 = datetime(2013, 6, 1)
WEEK = timedelta(days=7)
DRIFT, PERF, QUALITY = BreachKind.DRIFT, BreachKind.PERFORMANCE, BreachKind.QUALITY
Pair = tuple[BreachKind, str]


@pytest.fixture
def db(tmp_path: Path) -> MetadataDB:
    return MetadataDB(f"sqlite:///{tmp_path / 'modelloop.db'}", "flights")


def _run(as_of: datetime, *, breached: list[Pair] = (), clean: list[Pair] = ()) -> MonitoringResult:  # type: ignore[assignment]
    """A run at `as_of` that found `breached` and judged `clean` fine (both are judged)."""
    return MonitoringResult(
        as_of=as_of, window_start=as_of - WEEK, n_rows=500, n_labelled=250, metric="roc_auc",
        metric_value=0.7, drift=None, quality={}, versions={},
        breaches=[Breach(kind, f"{kind} on {subject}: numbers", subject) for kind, subject in breached],
        judged=[*breached, *clean],
    )


def _standing(db: MetadataDB) -> set[tuple[str, str, str]]:
    return {(a["kind"], a["subject"], a["status"]) for a in db.unresolved_alerts()}


def test_each_subject_is_its_own_alert_and_a_persisting_one_is_seen_again(db: MetadataDB) -> None:
    first = apply_alerts(db, _run(T0, breached=[(DRIFT, "temp"), (DRIFT, "distance"),
                                                (QUALITY, "missing:temp")]))
    assert len(first.opened) == 3 and first.still_open == []
    later = apply_alerts(db, _run(T0 + WEEK, breached=[(DRIFT, "temp")], clean=[(DRIFT, "distance")]))
    [temp] = later.still_open
    assert later.opened == [] and db.get_alert(temp)["subject"] == "temp"
    assert [db.get_alert(i)["subject"] for i in later.resolved] == ["distance"]
    assert db.get_alert(temp)["seen"] == 2
    assert db.get_alert(temp)["last_seen_as_of"] == (T0 + WEEK).isoformat()
    # missing:temp was not judged by the later run (not enough data): it stays open.
    assert _standing(db) == {("drift", "temp", "open"), ("quality", "missing:temp", "open")}


def test_rerunning_an_as_of_changes_no_alert(db: MetadataDB) -> None:
    run = _run(T0 + WEEK, breached=[(DRIFT, "temp"), (PERF, "roc_auc@origin=JFK")],
               clean=[(PERF, "roc_auc")])
    first = apply_alerts(db, run)
    before = db.alerts(limit=None)
    again = apply_alerts(db, run)
    assert again.opened == [] and again.resolved == [] and sorted(again.still_open) == sorted(first.opened)
    assert db.alerts(limit=None) == before  # not even the seen count moves


def test_only_a_clean_run_at_the_same_or_a_later_as_of_resolves(db: MetadataDB) -> None:
    [alert] = apply_alerts(db, _run(T0 + 2 * WEEK, breached=[(PERF, "roc_auc")])).opened
    assert apply_alerts(db, _run(T0, clean=[(PERF, "roc_auc")])).resolved == []  # an earlier week
    assert apply_alerts(db, _run(T0 + 3 * WEEK, clean=[(DRIFT, "temp")])).resolved == []  # not judged
    assert apply_alerts(db, _run(T0 + 2 * WEEK, clean=[(PERF, "roc_auc")])).resolved == [alert]
    resolved = db.get_alert(alert)
    assert resolved["status"] == AlertStatus.RESOLVED
    assert resolved["resolved_as_of"] == (T0 + 2 * WEEK).isoformat() and resolved["resolved_at"]


def test_a_breach_from_before_a_resolution_is_the_past_not_a_new_alert(db: MetadataDB) -> None:
    [alert] = apply_alerts(db, _run(T0 + WEEK, breached=[(DRIFT, "temp")])).opened
    apply_alerts(db, _run(T0 + 2 * WEEK, clean=[(DRIFT, "temp")]))
    # Backfilling the weeks the alert covered (or one before it) raises nothing new...
    assert apply_alerts(db, _run(T0 + WEEK, breached=[(DRIFT, "temp")])).opened == []
    assert apply_alerts(db, _run(T0, breached=[(DRIFT, "temp")])).opened == []
    assert _standing(db) == set()
    # ...but the condition coming back after the clean run is a new alert.
    [again] = apply_alerts(db, _run(T0 + 3 * WEEK, breached=[(DRIFT, "temp")])).opened
    assert again != alert


def test_an_acknowledged_alert_stays_unresolved_until_judged_clean(db: MetadataDB) -> None:
    [alert] = apply_alerts(db, _run(T0, breached=[(DRIFT, "temp")])).opened
    acked = acknowledge(db, alert, by="ana", reason="a holiday week, expected")
    assert acked["status"] == "acknowledged" and acked["acked_by"] == "ana" and acked["acked_at"]
    assert db.open_alerts() == [] and len(db.unresolved_alerts()) == 1
    kept = apply_alerts(db, _run(T0 + WEEK, breached=[(DRIFT, "temp")]))
    assert kept.still_open == [alert] and kept.opened == []  # not a new alert, not re-announced
    assert db.get_alert(alert)["status"] == "acknowledged"
    assert apply_alerts(db, _run(T0 + 2 * WEEK, clean=[(DRIFT, "temp")])).resolved == [alert]


def test_acking_twice_a_resolved_or_an_unknown_alert_is_a_clear_error(db: MetadataDB) -> None:
    [alert] = apply_alerts(db, _run(T0, breached=[(DRIFT, "temp")])).opened
    with pytest.raises(UsageError, match="--reason"):
        acknowledge(db, alert, by="ana", reason="  ")
    acknowledge(db, alert, by="ana", reason="on it")
    with pytest.raises(UsageError, match="already acknowledged by ana"):
        acknowledge(db, alert, by="bo", reason="me too")
    apply_alerts(db, _run(T0, clean=[(DRIFT, "temp")]))
    with pytest.raises(UsageError, match=f"alert {alert} .*is resolved"):
        acknowledge(db, alert, by="ana", reason="late")
    with pytest.raises(NotFound, match="alert 999 of model 'flights' does not exist"):
        acknowledge(db, 999, by="ana", reason="which one?")


def test_a_per_kind_alert_from_before_subjects_still_reads_and_resolves(db: MetadataDB) -> None:
    legacy = db.record_alert("drift", as_of=T0, detail={"message": "drift: 3 features"})
    assert db.get_alert(legacy)["subject"] == ""
    still = apply_alerts(db, _run(T0 + WEEK, breached=[(DRIFT, "temp")]))
    assert legacy not in still.resolved  # drift still breaches: the old alert stands
    resolved = apply_alerts(db, _run(T0 + 2 * WEEK, clean=[(DRIFT, "temp")])).resolved
    assert legacy in resolved and db.get_alert(legacy)["status"] == "resolved"


def test_pipeline_failures_keep_one_alert_per_failed_run(db: MetadataDB) -> None:
    run = db.start_run("train", as_of=T0, trigger="schedule", origin="schedule")
    db.finish_run(run, status="failed", detail={}, error="boom")
    alert = failure_alert(db, db.get_run(run), 2)
    assert alert is not None and failure_alert(db, db.get_run(run), 2) is None
    assert db.get_alert(alert)["subject"] == "train"
    # Monitoring never touches it, clean or not.
    apply_alerts(db, _run(T0 + WEEK, clean=[(DRIFT, "temp"), (PERF, "roc_auc")]))
    assert [a["kind"] for a in db.open_alerts()] == [AlertKind.PIPELINE_FAILED]


def test_opening_and_resolving_queue_webhook_events_and_acking_does_not(db: MetadataDB) -> None:
    config = AlertsConfig.model_validate({"webhooks": [
        {"url": "http://127.0.0.1:9/hook", "format": "json"},
        {"url": "http://127.0.0.1:9/slack", "format": "slack"},
    ]})
    [alert] = apply_alerts(db, _run(T0, breached=[(DRIFT, "temp")]), config).opened
    acknowledge(db, alert, by="ana", reason="on it")
    apply_alerts(db, _run(T0 + WEEK, breached=[(DRIFT, "temp")]), config)  # seen again: no event
    apply_alerts(db, _run(T0 + 2 * WEEK, clean=[(DRIFT, "temp")]), config)
    queued = sorted(db.deliveries(alert_id=alert), key=lambda d: d["id"])
    assert [(d["event"], d["url"].rsplit("/", 1)[1]) for d in queued] == [
        ("alert.opened", "hook"), ("alert.opened", "slack"),
        ("alert.resolved", "hook"), ("alert.resolved", "slack"),
    ]
    assert all(d["status"] == "pending" and d["attempts"] == 0 for d in queued)
    opened = json.loads(queued[0]["payload"])
    assert opened["event"] == "alert.opened" and opened["model"] == "flights"
    assert opened["alert"]["id"] == alert and opened["alert"]["subject"] == "temp"
    assert opened["alert"]["message"] == "drift on temp: numbers"
    slack = json.loads(queued[3]["payload"])
    assert set(slack) == {"text"} and "flights" in slack["text"] and "temp" in slack["text"]
    assert "resolved" in slack["text"]


def test_old_alert_rows_move_to_an_empty_subject_in_the_migration(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    path = tmp_path / "v3.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", "modelloop.store:migrations")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        connection.execute(sa.text(
            "INSERT INTO modelloop_alerts (model, kind, as_of, detail, status, resolved_as_of,"
            " created_at) VALUES ('flights', 'drift', '2013-06-01 00:00:00',"
            " '{\"message\": \"drift: 3 features\"}', 'open', NULL, '2013-06-02 00:00:00')"))
    db = MetadataDB(f"sqlite:///{path}", "flights")
    [old] = db.open_alerts()
    assert (old["kind"], old["subject"], old["status"], old["seen"]) == ("drift", "", "open", 1)
    assert db.alert_counts() == {"open": {"drift": 1}, "acknowledged": {}}
    assert db.deliveries() == []  # the outbox is there
