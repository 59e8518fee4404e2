"""Alerts with a lifecycle and retraining that fires once per condition: the policy that used to
live in project.py, now judged on typed breach kinds."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelloop.config import RetriesConfig, parse_config
from modelloop.monitoring.breaches import Breach, BreachKind
from modelloop.monitoring.drift import DriftResult
from modelloop.monitoring.pipeline import MonitoringResult
from modelloop.orchestration import AlertKind, TriggerKind, apply_alerts, judge_trigger, plan_retries
from modelloop.orchestration.policy import failure_alert
from modelloop.store import MetadataDB

T0 = datetime(2013, 6, 1)


@pytest.fixture
def db(tmp_path: Path) -> MetadataDB:
    return MetadataDB(f"sqlite:///{tmp_path / 'modelloop.db'}", "flights")


def _result(as_of: datetime, *, breaches: list[BreachKind] = (), rows: int = 500,  # type: ignore[assignment]
            metric: float | None = 0.7) -> MonitoringResult:
    return MonitoringResult(
        as_of=as_of,
        window_start=as_of - timedelta(days=7),
        n_rows=rows,
        n_labelled=rows // 2,
        metric="roc_auc",
        metric_value=metric,
        drift=DriftResult(features=[], threshold=0.2, n_rows=rows) if rows else None,
        quality={},
        versions={},
        breaches=[Breach(kind, f"{kind}: numbers") for kind in breaches],
        # What the pipeline could judge: performance with a metric, drift with rows.
        judged=[(k, "") for k, can in ((BreachKind.PERFORMANCE, metric is not None),
                                        (BreachKind.DRIFT, rows > 0)) if can],
    )


def _open(db: MetadataDB) -> list[tuple[str, str]]:
    return [(a["kind"], a["as_of"]) for a in db.open_alerts()]


def test_a_persisting_breach_is_one_alert_and_a_rerun_changes_nothing(db: MetadataDB) -> None:
    first = apply_alerts(db, _result(T0, breaches=[BreachKind.DRIFT]))
    assert len(first.opened) == 1
    again = apply_alerts(db, _result(T0, breaches=[BreachKind.DRIFT]))  # the same as-of re-run
    later = apply_alerts(db, _result(T0 + timedelta(days=7), breaches=[BreachKind.DRIFT]))
    assert again.opened == [] and later.opened == [] and later.still_open == first.opened
    assert _open(db) == [("drift", T0.isoformat())]


def test_an_alert_closes_only_on_a_clean_run_at_the_same_or_a_later_as_of(db: MetadataDB) -> None:
    apply_alerts(db, _result(T0 + timedelta(days=14), breaches=[BreachKind.DRIFT, BreachKind.PERFORMANCE]))
    earlier = apply_alerts(db, _result(T0))  # a clean run of an earlier week
    assert earlier.resolved == [] and len(_open(db)) == 2
    no_labels = apply_alerts(db, _result(T0 + timedelta(days=21), metric=None))
    # Drift was judged clean; performance could not be judged without a metric: still open.
    [drift] = no_labels.resolved
    assert db.get_alert(drift)["kind"] == "drift"
    assert _open(db) == [("performance", (T0 + timedelta(days=14)).isoformat())]
    empty = apply_alerts(db, _result(T0 + timedelta(days=28), rows=0, metric=None))
    assert empty.resolved == [] and len(_open(db)) == 1
    [performance] = apply_alerts(db, _result(T0 + timedelta(days=28))).resolved
    assert db.get_alert(performance)["kind"] == "performance"
    assert _open(db) == []


def _config(**retraining: Any) -> Any:
    import yaml

    raw = yaml.safe_load(
        (Path(__file__).parents[2] / "src/modelloop/examples/flights.yaml").read_text()
    )
    raw["retraining"] = {**raw.get("retraining", {}), **retraining}
    return parse_config(raw)


def test_a_condition_fires_once_then_the_cooldown_holds_until_it_passes(db: MetadataDB) -> None:
    config = _config(cooldown="7d")
    kinds = [TriggerKind.DRIFT]
    fired = judge_trigger(db, config, kinds=kinds, reason="drift at T0", as_of=T0)
    same = judge_trigger(db, config, kinds=kinds, reason="drift at T0", as_of=T0)
    inside = judge_trigger(db, config, kinds=kinds, reason="drift at T0+3d", as_of=T0 + timedelta(days=3))
    after = judge_trigger(db, config, kinds=kinds, reason="drift at T0+7d", as_of=T0 + timedelta(days=7))
    assert [fired.fired, same.fired, inside.fired, after.fired] == [True, False, False, True]
    assert same.held is not None and "already fired" in same.held
    assert inside.held == f"cooldown until {(T0 + timedelta(days=7)).isoformat()}"


def test_a_cooldown_in_months_counts_calendar_months(db: MetadataDB) -> None:
    config = _config(cooldown="1mo")
    judge_trigger(db, config, kinds=[TriggerKind.DRIFT], reason="a", as_of=datetime(2013, 1, 31))
    held = judge_trigger(db, config, kinds=[TriggerKind.DRIFT], reason="b", as_of=datetime(2013, 2, 27))
    fired = judge_trigger(db, config, kinds=[TriggerKind.DRIFT], reason="c", as_of=datetime(2013, 2, 28))
    assert not held.fired and fired.fired  # Jan 31 + 1 month = Feb 28


def test_retries_wait_out_an_exponential_backoff_then_raise_one_alert(db: MetadataDB) -> None:
    retries = RetriesConfig(count=2, backoff=timedelta(minutes=1))
    manual = db.start_run("train", as_of=T0, trigger="manual", origin="cli")
    db.finish_run(manual, status="failed", detail={}, error="boom")
    first = db.start_run("train", as_of=T0, trigger="schedule", origin="schedule")
    db.finish_run(first, status="failed", detail={}, error="boom")
    finished = datetime.fromisoformat(db.get_run(first)["finished_at"])
    assert plan_retries(db, retries, finished + timedelta(seconds=59)).due == []
    due = plan_retries(db, retries, finished + timedelta(seconds=61)).due
    assert [r["id"] for r in due] == [first]  # a person's failed command is not retried
    second = db.start_run("train", as_of=T0, trigger="retry", origin="retry", attempt=2, retry_of=first)
    db.finish_run(second, status="failed", detail={}, error="boom again")
    finished = datetime.fromisoformat(db.get_run(second)["finished_at"])
    assert plan_retries(db, retries, finished + timedelta(seconds=61)).due == []  # now 2 min
    assert [r["id"] for r in plan_retries(db, retries, finished + timedelta(seconds=121)).due] == [second]
    third = db.start_run("train", as_of=T0, trigger="retry", origin="retry", attempt=3, retry_of=second)
    db.finish_run(third, status="failed", detail={}, error="boom, third")
    plan = plan_retries(db, retries, finished + timedelta(hours=1))
    assert plan.due == [] and [(r["id"], n) for r, n in plan.exhausted] == [(third, 3)]
    assert failure_alert(db, plan.exhausted[0][0], 3) is not None
    assert failure_alert(db, plan.exhausted[0][0], 3) is None  # once
    [alert] = db.open_alerts(AlertKind.PIPELINE_FAILED)
    message = alert["detail"]["message"]
    assert "train failed 3 time(s)" in message and "boom, third" in message
