"""`modelloop demo` and `modelloop init` on the real NYC flights data (a short replay)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import cli_json, run_cli

pytestmark = pytest.mark.integration


def test_demo_plays_weeks_through_the_server_and_leaves_a_working_project(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    done = run_cli("demo", "--dir", str(target), "--weeks", "2", cwd=tmp_path)
    assert "flight-delays: a year in production" in done.stdout
    assert "gate decisions, with their reasons" in done.stdout
    summary = target / ".modelloop" / "reports" / "flight-delays" / "demo-summary.html"
    assert f"report: {summary}" in done.stdout.replace("\n", "")
    weeks = json.loads(summary.with_suffix(".json").read_text())
    assert [w["number"] for w in weeks] == [1, 2]
    assert all(0.6 < w["metric"] < 0.8 and w["n_labelled"] > 4000 for w in weeks)
    log = target / ".modelloop" / "predictions" / "flight-delays"
    days = sorted(p.name for p in log.iterdir() if p.name.startswith("date="))
    assert days[0] == "date=2013-03-01" and days[-1] == "date=2013-03-14" and len(days) == 14
    # Everything else there is the log's own bookkeeping, hidden the Hive way (a leading "_").
    assert all(p.name.startswith(("date=", "_")) for p in log.iterdir())
    assert list(log.rglob("*.wal")) == []  # the demo's server stopped cleanly: all in Parquet

    status = cli_json("status", cwd=target)
    assert status["champion"]["version"] >= 1
    assert status["last_monitoring"]["as_of"] == "2013-03-15T00:00:00"

    refused = run_cli("demo", "--dir", str(target), cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "not empty" in refused.stderr and "--force" in refused.stderr


def test_init_writes_a_working_commented_project(tmp_path: Path) -> None:
    run_cli("init", "proj", cwd=tmp_path)
    text = (tmp_path / "proj" / "modelloop.yaml").read_text()
    assert text.count("#") > 10 and "flight-delays" in text
    trained = cli_json("train", "--as-of", "2013-03-01", cwd=tmp_path / "proj")
    assert trained["decision"]["outcome"] == "promoted"
    assert trained["rows"]["train"] > 30000
    again = run_cli("init", "proj", cwd=tmp_path, check=False)
    assert again.returncode == 1 and "--force" in again.stderr


def test_init_writes_a_regression_example_whose_floor_is_a_ceiling(tmp_path: Path) -> None:
    run_cli("init", "--task", "regression", "proj", cwd=tmp_path)
    text = (tmp_path / "proj" / "modelloop.yaml").read_text()
    assert "task: regression" in text and "HistGradientBoostingRegressor" in text
    assert "CEILING" in text  # the template says which way an error metric's floor points
    trained = cli_json("train", "--as-of", "2013-03-01", cwd=tmp_path / "proj")
    assert trained["metric"] == "mae" and 5 < trained["holdout_score"] < 30  # minutes
    decision = trained["decision"]
    assert decision["outcome"] == "promoted"
    assert any(r.startswith("mae ") and "<= ceiling 30.0000: passed" in r for r in decision["reasons"])
