"""The dashboard page from a payload: every section drawn, text from the data escaped, actions
only for a session, and a payload with nothing in it still a page."""

from __future__ import annotations

import re
from typing import Any

from modelloop.reports import render_dashboard
from modelloop.reports.charts import heat_map
from tests.reports.payloads import EVIL


def _version(number: int, status: str) -> dict[str, Any]:
    return {
        "version": number, "status": status, "aliases": [], "trigger": "manual",
        "trained_as_of": "2024-03-01T00:00:00", "window": {"train_start": "2024-01-01T00:00:00",
                                                           "train_end": "2024-02-01T00:00:00"},
        "holdout_score": "0.71", "description": f"approved by {EVIL}", "created_at": None,
        "run_id": "abc", "mlflow_version_url": None, "mlflow_run_url": None, "refit_of": None,
    }


def _window(i: int, champion: int, value: float) -> dict[str, Any]:
    return {
        "id": i, "as_of": f"2024-03-0{i}T00:00:00", "n_rows": 100, "n_labelled": 80,
        "coverage": 0.8, "metric": 0.7 + i / 100, "estimated": None, "champion": str(champion),
        "drift": [
            {"feature": "x1", "method": "psi", "value": value, "threshold": 0.2, "drifted": value > 0.2},
            {"feature": EVIL, "method": "psi", "value": 0.01, "threshold": 0.2, "drifted": False},
        ],
        "drifted": ["x1"] if value > 0.2 else [],
        "quality": {"missing": 1, "out_of_range": 0, "unseen": 0, "contract": 0},
        "breaches": [{"kind": "drift", "message": "x1 drifted"}] if value > 0.2 else [],
        "has_report": i != 2,
    }


def payload() -> dict[str, Any]:
    champion = _version(2, "champion")
    return {
        "model": "flights", "metric": "roc_auc", "direction": "maximize", "performance_floor": 0.65,
        "gate_floor": 0.6, "approval": "manual", "mlflow_url": None, "champion": champion,
        "challenger": None, "previous": _version(1, "retired"), "versions": [champion],
        "pending": [3],
        "events": [{
            "at": "2026-11-30T07:00:00", "action": "promoted", "version": 2, "from_version": 1,
            "by": "gate", "reason": "holdout ...", "as_of": "2024-03-01T00:00:00",
            "evidence": {
                "metric": "roc_auc", "candidate": 0.7, "champion": 0.6, "champion_version": 1,
                "holdout": {"start": "2024-02-20T00:00:00", "end": "2024-03-01T00:00:00", "rows": 300},
                "replay": {"passed": True, "reason": "won 1 of 1", "windows": [
                    {"start": "2024-02-01T00:00:00", "end": "2024-02-08T00:00:00", "rows": 100,
                     "candidate": 0.7, "champion": 0.6, "verdict": "won"}]},
            },
        }],
        "monitoring": [_window(1, 1, 0.1), _window(2, 1, 0.15), _window(3, 2, 0.3)],
        "alerts": [{"id": 7, "kind": "drift", "subject": "x1", "status": "open", "seen": 2,
                    "as_of": "2024-03-03T00:00:00", "message": "x1 drifted"}],
        "runs": [], "runtime": None, "pipelines": [],
        "delivery": {"promotions": 2, "change_failure_rate": 0.5},
    }


def test_every_section_is_drawn_and_the_data_is_escaped() -> None:
    html = render_dashboard(payload())
    assert "<h1>flights</h1>" in html
    assert EVIL not in html and "&lt;script&gt;" in html
    # Performance with the floor and a mark where the champion changed (window 3: v2).
    assert html.count('<svg class="chart line"') == 2 and 'class="floor"' in html
    assert html.count('class="mark"') == 1 and ">v2</text>" in html
    # The heat map: 2 features x 3 windows, the drifted cell outlined, window 2 has no report.
    assert html.count('<rect class="cell') == 6 and html.count('class="cell flagged"') == 1
    assert html.count('<a href="/ui/reports/1">') == 2 + 1 and "/ui/reports/2" not in html
    assert "won 1 of 1" in html and "<details>" in html
    assert "<script" not in html


def test_actions_are_offered_only_to_a_session_with_its_csrf_token() -> None:
    anonymous = render_dashboard(payload())
    assert "<form" not in anonymous and 'href="/ui/signin"' in anonymous
    signed = render_dashboard(payload(), session={"who": "ana", "csrf": "t0ken"}, done="approved")
    forms = re.findall(r'<form class="act (\w+)" method="post" action="(/ui/[a-z/]+)">'
                       r'<input type="hidden" name="csrf" value="t0ken">', signed)
    assert sorted(forms) == [("ack", "/ui/actions/ack"), ("approve", "/ui/actions/approve"),
                             ("reject", "/ui/actions/reject"), ("rollback", "/ui/actions/rollback")]
    assert "Approved: the version is the champion now." in signed
    # A crafted ?done= says nothing.
    assert "<p class=\"done\">" not in render_dashboard(payload(), done="<b>hi</b>")
    read_only = render_dashboard(payload(), can_sign_in=False)
    assert "/ui/signin" not in read_only and "read-only" in read_only


def test_an_empty_payload_is_still_a_page() -> None:
    html = render_dashboard({})
    assert "unknown model" in html and "no data" in html and "No monitoring run yet" in html


def test_the_heat_map_colours_by_share_of_threshold() -> None:
    chart = heat_map(["a"], ["w1", "w2", "w3"], [[0.0, 1.0, None]], title="t")
    colours = [cell.colour for cell in chart.cells]
    assert colours[0] == "#f8f9fa" and colours[1] == "#f08c3c" and colours[2] == "#cbd2d9"
    assert all(cell.width > 0 and cell.height > 0 for cell in chart.cells)
