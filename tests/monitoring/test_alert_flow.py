"""An alert's life through a real Project (in-memory registry and log, SQLite metadata): opened by
a drifted week, the same alert when that week is monitored again, untouched by a run at an
earlier as-of, resolved by a later clean week; and the report of each run saying so."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd
from tests.conftest import AS_OF, RAW_CONFIG, serve_rows

from modelloop.config import parse_config
from modelloop.monitoring.pipeline import MonitoringResult
from modelloop.project import MonitorOutcome, Project


def _config() -> Any:
    raw = json.loads(json.dumps(RAW_CONFIG))
    # Two of the four features drifting is the dataset drift that retrains.
    raw["monitoring"] = {**raw["monitoring"], "drift_share": 0.3}
    return parse_config(raw, "modelloop.yaml")


def _week(flights: pd.DataFrame, end: pd.Timestamp, *, moved: bool = False, tag: str = "") -> pd.DataFrame:
    """The flights of the week before `end`; `moved`: distance and temp far from training; `tag`:
    the same flights a week later under new ids."""
    rows = flights[(flights["sched_dep"] > end - timedelta(days=7)) & (flights["sched_dep"] <= end)].copy()
    if tag:
        rows["flight_id"] = tag + rows["flight_id"]
        rows["sched_dep"] = rows["sched_dep"] + timedelta(days=7)
    if moved:
        rows["distance"] = rows["distance"] * 3 + 500
        rows["temp"] = rows["temp"] + 25
    return rows.drop(columns=["delayed"])


def _report(outcome: MonitorOutcome) -> tuple[dict[str, Any], str]:
    result: MonitoringResult = outcome.result
    assert result.report_json is not None and result.report_html is not None
    return (json.loads(result.report_json.read_text(encoding="utf-8")),
            result.report_html.read_text(encoding="utf-8"))


def _drift(
    project: Project, subject: str, status: tuple[str, ...] | None = ("open",)
) -> list[dict[str, Any]]:
    return [a for a in project.alerts(status=status, kind="drift") if a["subject"] == subject]


def test_a_drift_alert_opens_persists_ignores_the_past_and_resolves_later(
    make_project: Callable[..., Project], flights: pd.DataFrame
) -> None:
    project = make_project(config=_config())
    project.train(as_of=AS_OF - timedelta(days=10))
    end = pd.Timestamp(AS_OF)
    serve_rows(project, _week(flights, end, moved=True), "req-moved")
    serve_rows(project, _week(flights, end - timedelta(days=14)), "req-before")
    serve_rows(project, _week(flights, end, tag="L-"), "req-after")

    # A drifted week: one open alert per drifted feature, and the dataset drift (2 of 4 > 30%).
    first = project.monitor(as_of=AS_OF, retrain=False)
    assert first.result.drift is not None
    assert sorted(first.result.drift.drifted) == ["distance", "temp"]
    [distance] = _drift(project, "distance")
    [temp] = _drift(project, "temp")
    assert (distance["kind"], distance["status"], distance["as_of"]) == ("drift", "open", AS_OF.isoformat())
    assert distance["message"].startswith("drift: distance PSI ")
    assert {distance["id"], temp["id"]} <= set(first.alerts)
    assert first.trigger == {
        "fired": False, "kinds": ["drift"], "skipped": "--no-retrain",
        "reason": f"monitoring alert at {AS_OF.isoformat()}: {first.result.drift_alarm}",
    }
    payload, html = _report(first)
    assert payload["alerts"] == {"opened": first.alerts, "still_open": [], "resolved": []}
    assert payload["trigger"] == first.trigger
    assert [p["as_of"] for p in payload["history"]] == [AS_OF.isoformat()]
    assert sorted(payload["history"][0]["drifted"]) == ["distance", "temp"]
    assert f'<span class="tag">#{distance["id"]}</span>' in html
    assert "No retraining</strong>: --no-retrain" in html

    # The same week again: the same alerts, seen again, none new.
    again = project.monitor(as_of=AS_OF, retrain=False)
    assert again.alerts == first.alerts
    assert [a["id"] for a in _drift(project, "distance")] == [distance["id"]]
    payload, _html = _report(again)
    assert payload["alerts"] == {"opened": [], "still_open": first.alerts, "resolved": []}
    assert [p["as_of"] for p in payload["history"]] == [AS_OF.isoformat()]

    # An earlier week, clean: it says nothing of now, so the alert stays open.
    earlier_as_of = AS_OF - timedelta(days=14)
    earlier = project.monitor(as_of=earlier_as_of, retrain=False)
    assert earlier.result.drift is not None and "distance" not in earlier.result.drift.drifted
    assert ("drift", "distance") in {(str(k), s) for k, s in earlier.result.judged}
    assert [a["id"] for a in _drift(project, "distance")] == [distance["id"]]
    payload, _html = _report(earlier)
    assert payload["alerts"]["resolved"] == [] and payload["trigger"] is None
    assert [p["as_of"] for p in payload["history"]] == [earlier_as_of.isoformat()]  # none after it

    # A later clean week resolves both drift alerts, as of that week.
    later_as_of = AS_OF + timedelta(days=7)
    later = project.monitor(as_of=later_as_of, retrain=False)
    assert later.result.drift is not None and later.result.drift.drifted == []
    assert _drift(project, "distance") == [] and _drift(project, "temp") == []
    [resolved] = _drift(project, "distance", status=None)
    assert (resolved["id"], resolved["status"]) == (distance["id"], "resolved")
    assert resolved["resolved_as_of"] == later_as_of.isoformat()
    payload, html = _report(later)
    assert {distance["id"], temp["id"]} <= set(payload["alerts"]["resolved"])
    assert payload["trigger"] is None
    assert [p["as_of"] for p in payload["history"]] == [
        earlier_as_of.isoformat(), AS_OF.isoformat(), later_as_of.isoformat(),
    ]
    assert f'<span class="tag">#{distance["id"]}</span>' in html
