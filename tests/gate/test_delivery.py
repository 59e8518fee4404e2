"""Delivery metrics from what `modelloop.db` records: promotions per week, lead time from the
training run's start to the promotion, the share of promotions rolled back, and the time to
restore. The database is a real SQLite file; its clock (the wall clock every row is stamped
with) is set by each test, so the hours are exact."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelloop.gate.delivery import delivery_metrics
from modelloop.gate.history import record_move
from modelloop.gate.rollback import ROLLED_BACK
from modelloop.project import Project
from modelloop.store import MetadataDB

T0 = datetime(2025, 3, 3, 9, 0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def at(self, hours: float) -> None:
        self.now = T0 + timedelta(hours=hours)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("modelloop.store.db._now", lambda: clock.now)
    return clock


@pytest.fixture
def db(tmp_path: Path) -> MetadataDB:
    return MetadataDB(f"sqlite:///{tmp_path / 'modelloop.db'}", model="flights")


def _trained(db: MetadataDB, clock: Clock, version: int, started: float, *,
             retry_of: int | None = None) -> int:
    """A training run started at `started` hours that registered `version` an hour later."""
    clock.at(started)
    run = db.start_run("train", as_of=None, trigger="manual", retry_of=retry_of,
                       attempt=2 if retry_of else 1)
    clock.at(started + 1)
    db.finish_run(run, status="succeeded", detail={"version": version, "score": 0.7})
    return run


def _failed_run(db: MetadataDB, clock: Clock, started: float) -> int:
    clock.at(started)
    run = db.start_run("train", as_of=None, trigger="drift alert", origin="trigger")
    clock.at(started + 0.5)
    db.finish_run(run, status="failed", detail={}, error="the source did not answer")
    return run


def _move(db: MetadataDB, clock: Clock, hours: float, version: int, from_version: int | None,
          action: str, by: str = "gate") -> None:
    clock.at(hours)
    record_move(db, version, from_version, action=action, by=by, reason="test")


def test_nothing_recorded_gives_zeros_and_nones(db: MetadataDB) -> None:
    assert delivery_metrics(db, now=T0) == {
        "window_days": None,
        "since": None,
        "until": T0.isoformat(),
        "promotions": 0,
        "deployment_frequency_per_week": 0.0,
        "lead_time_hours_median": None,
        "lead_time_hours_p90": None,
        "lead_times_measured": 0,
        "promotions_rolled_back": 0,
        "change_failure_rate": None,
        "time_to_restore_hours_median": None,
        "rollbacks": 0,
    }
    assert delivery_metrics(db, now=T0, window=timedelta(days=28))["deployment_frequency_per_week"] == 0


def test_a_week_of_promotions_a_rollback_and_a_retried_training(db: MetadataDB, clock: Clock) -> None:
    _trained(db, clock, 1, started=0)
    _move(db, clock, 2, 1, None, "promoted")                     # lead time 2 h
    _trained(db, clock, 2, started=24)
    _move(db, clock, 30, 2, 1, "promoted")                       # lead time 6 h
    _move(db, clock, 32.5, 1, 2, ROLLED_BACK, by="guardrails")   # restored after 2.5 h
    first = _failed_run(db, clock, started=46)
    _trained(db, clock, 3, started=47, retry_of=first)
    _move(db, clock, 50, 3, 1, "approved", by="ana")             # 4 h from the first attempt

    out = delivery_metrics(db, now=T0 + timedelta(days=7))

    assert out["since"] == T0.isoformat() and out["window_days"] is None
    assert out["promotions"] == 3
    assert out["deployment_frequency_per_week"] == pytest.approx(3.0)
    assert out["lead_times_measured"] == 3
    assert out["lead_time_hours_median"] == pytest.approx(4.0)
    assert out["lead_time_hours_p90"] == pytest.approx(5.6)  # between 4 and 6 h, nearer 6
    assert out["promotions_rolled_back"] == 1 and out["rollbacks"] == 1
    assert out["change_failure_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert out["time_to_restore_hours_median"] == pytest.approx(2.5)


def test_undoing_a_rollback_is_not_a_second_failure(db: MetadataDB, clock: Clock) -> None:
    _trained(db, clock, 1, started=0)
    _move(db, clock, 1.5, 1, None, "promoted")
    _trained(db, clock, 2, started=2)
    _move(db, clock, 3.5, 2, 1, "promoted")
    _move(db, clock, 4, 1, 2, ROLLED_BACK, by="carol")  # version 2 failed
    _move(db, clock, 5, 2, 1, ROLLED_BACK, by="carol")  # and comes back: v1 was no promotion
    _move(db, clock, 6, 1, 2, ROLLED_BACK, by="carol")  # v2 again: its promotion failed once

    out = delivery_metrics(db, now=T0 + timedelta(days=1))

    assert out["promotions"] == 2 and out["rollbacks"] == 3
    assert out["promotions_rolled_back"] == 1 and out["change_failure_rate"] == 0.5
    assert out["time_to_restore_hours_median"] == pytest.approx(0.5)


def test_a_window_counts_only_its_own_promotions_per_week(db: MetadataDB, clock: Clock) -> None:
    for version, day in enumerate([0, 10, 20, 24, 26], start=1):
        _trained(db, clock, version, started=24 * day)
        _move(db, clock, 24 * day + 3, version, version - 1 or None, "promoted")
    _move(db, clock, 24 * 26 + 5, 4, 5, ROLLED_BACK, by="guardrails")
    now = T0 + timedelta(days=28)

    last_fortnight = delivery_metrics(db, now=now, window=timedelta(days=14))
    everything = delivery_metrics(db, now=now)

    assert last_fortnight["window_days"] == 14.0
    assert last_fortnight["since"] == (now - timedelta(days=14)).isoformat()
    assert last_fortnight["promotions"] == 3  # days 20, 24 and 26
    assert last_fortnight["deployment_frequency_per_week"] == pytest.approx(1.5)
    assert last_fortnight["change_failure_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert everything["promotions"] == 5
    assert everything["deployment_frequency_per_week"] == pytest.approx(5 / 4)
    assert everything["lead_time_hours_median"] == pytest.approx(3.0)
    # an aware `now` is the same instant
    aware = delivery_metrics(db, now=now.replace(tzinfo=UTC), window=timedelta(days=14))
    assert aware == last_fortnight


def test_a_refit_counts_from_the_training_of_the_version_it_refits(
        db: MetadataDB, clock: Clock) -> None:
    _trained(db, clock, 4, started=0)
    clock.at(2)
    db.record_decision(4, outcome="promoted", reasons=["passed"], as_of=None,
                       metrics={"refit": {"version": 5, "of": 4, "served": True}})
    _move(db, clock, 3, 5, None, "promoted")  # the refit serves

    out = delivery_metrics(db, now=T0 + timedelta(days=1))

    assert out["promotions"] == 1 and out["lead_time_hours_median"] == pytest.approx(3.0)


def test_moves_that_are_not_promotions_are_not_counted(db: MetadataDB, clock: Clock) -> None:
    _trained(db, clock, 1, started=0)
    clock.at(1)
    db.record_alias("champion", 1, from_version=None, action="found", by="modelloop",
                    reason="history began", source="existing")
    clock.at(2)
    db.record_alias("champion", 2, from_version=1, action="moved", by="outside modelloop",
                    reason="the MLflow UI", source="external")
    _move(db, clock, 3, 1, 2, ROLLED_BACK, by="carol")  # undoing the outside move: no failure

    out = delivery_metrics(db, now=T0 + timedelta(days=1))

    assert out["promotions"] == 0 and out["promotions_rolled_back"] == 0
    assert out["change_failure_rate"] is None and out["rollbacks"] == 1


def test_from_a_real_project_trained_gated_and_rolled_back(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = make_project()
    project.train(as_of=as_of)
    _, decision = project.train(as_of=as_of)
    assert decision is not None and decision.outcome == "promoted"
    project.rollback(reason="the guardrails saw errors", by="carol")

    out = delivery_metrics(project.db, now=datetime.now(UTC))

    assert out["promotions"] == 2 and out["lead_times_measured"] == 2
    assert 0 <= out["lead_time_hours_median"] < 1  # trained and promoted within the test (may round to 0)
    assert out["promotions_rolled_back"] == 1 and out["change_failure_rate"] == 0.5
    assert out["time_to_restore_hours_median"] is not None
    assert out["deployment_frequency_per_week"] == 2.0  # less than a week of history counts as one
