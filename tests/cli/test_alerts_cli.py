"""`modelloop alerts`: the table and --json of standing alerts, `alerts ack` with a person and a
reason (a resolved or unknown alert is one clear error line, no traceback), `alerts deliver`, and
`status --json` counting open alerts by kind."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from modelloop.cli.app import app
from modelloop.project import Project
from tests.conftest import build_project

AS_OF = datetime(2013, 6, 1)


@pytest.fixture
def project(tmp_path: Path, flights: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The project every command opens: in-memory registry and log, SQLite metadata."""
    built = build_project(tmp_path / "p", flights)
    monkeypatch.setattr("modelloop.project.open_project", lambda *_args, **_kw: built)
    return built


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "MODELLOOP_USER": "ana"})


def _raise(project: Project, kind: str, subject: str) -> int:
    return project.db.record_alert(kind, subject=subject, as_of=AS_OF,
                                   detail={"message": f"{kind} on {subject}"})


def test_alerts_lists_the_standing_ones_newest_first(project: Project) -> None:
    temp = _raise(project, "drift", "temp")
    auc = _raise(project, "performance", "roc_auc@origin=JFK")
    gone = _raise(project, "quality", "missing:temp")
    project.db.resolve_alert(gone, as_of=AS_OF)
    shown = _invoke("alerts")
    assert shown.exit_code == 0, shown.output
    assert "roc_auc@origin=JFK" in shown.output and "temp" in shown.output
    assert "missing:temp" not in shown.output
    listed = json.loads(_invoke("alerts", "--json").output)
    assert [a["id"] for a in listed] == [auc, temp]
    assert set(listed[0]) >= {"id", "kind", "subject", "status", "as_of", "last_seen_as_of",
                              "message", "acked_by"}
    resolved = json.loads(_invoke("alerts", "--status", "resolved", "--json").output)
    assert [a["id"] for a in resolved] == [gone]
    only = json.loads(_invoke("alerts", "--status", "all", "--kind", "drift", "--json").output)
    assert [a["id"] for a in only] == [temp]
    bad = _invoke("alerts", "--status", "closed")
    assert bad.exit_code == 2 and "--status" in bad.output and "Traceback" not in bad.output


def test_ack_records_who_and_why_and_keeps_the_alert_unresolved(project: Project) -> None:
    temp = _raise(project, "drift", "temp")
    done = _invoke("alerts", "ack", str(temp), "--reason", "a holiday week")
    assert done.exit_code == 0, done.output
    assert f"alert {temp}" in done.output and "acknowledged by ana" in done.output
    [alert] = json.loads(_invoke("alerts", "--json").output)
    assert (alert["status"], alert["acked_by"], alert["ack_reason"]) == (
        "acknowledged", "ana", "a holiday week")
    other = _invoke("alerts", "ack", str(_raise(project, "volume", "rows")), "--reason", "r",
                    "--by", "bo", "--json")
    assert json.loads(other.output)["acked_by"] == "bo"


def test_acking_a_resolved_or_unknown_alert_is_one_clear_error(project: Project) -> None:
    gone = _raise(project, "drift", "temp")
    project.db.resolve_alert(gone, as_of=AS_OF)
    resolved = _invoke("alerts", "ack", str(gone), "--reason", "late")
    assert resolved.exit_code == 2 and "is resolved" in resolved.output
    unknown = _invoke("alerts", "ack", "4242", "--reason", "which?")
    assert unknown.exit_code == 1 and "alert 4242" in unknown.output and "does not exist" in unknown.output
    assert "Traceback" not in resolved.output + unknown.output
    missing = _invoke("alerts", "ack", str(gone))
    assert missing.exit_code == 2 and "--reason" in missing.output


def test_deliver_with_nothing_due_and_status_counts_alerts_by_kind(project: Project) -> None:
    _raise(project, "drift", "temp")
    _raise(project, "drift", "distance")
    acked = _raise(project, "performance", "roc_auc")
    project.db.ack_alert(acked, by="ana", reason="r")
    sent = _invoke("alerts", "deliver", "--json")
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output) == {"delivered": 0, "retrying": 0, "failed": 0, "left": 0}
    counts = project.status()["alert_counts"]
    assert counts == {"open": {"drift": 2}, "acknowledged": {"performance": 1}}
