"""The dashboard in a real browser: the Debian Chromium, driven by Playwright, opens `/ui` on a
real `modelloop serve` over a finished small project. The page must request nothing outside the
server, log no error and draw its charts; a person signs in, approves the version waiting and
rolls it back, and `modelloop status --json` says so.

Screenshots go to $MODELLOOP_SCREENSHOTS (CI keeps that folder) or the test's temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ServerProcess, cli_json, run_cli
from tests.integration.synthetic import day, make_frame, split_body, write_project
from tests.integration.test_report_browser import drawn

pytestmark = pytest.mark.integration

TOKEN = "s3cret-for-the-browser"
FEATURES = ["x1", "x2", "x3", "seg"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ServerProcess]]:
    """Trained on days 20-30 and approved (v1); days 31-74 served with their labels, monitored
    weekly (the world drifts on day 60); retrained at day 74, waiting for approval (v2)."""
    root = tmp_path_factory.mktemp("ui-browser")
    frame = make_frame(days=75)
    frame.to_parquet(root / "data.parquet", index=False)
    path = write_project(root, estimator="sklearn.linear_model.LogisticRegression", params="{C: 1.0}")
    text = path.read_text(encoding="utf-8").replace("gate:\n", "gate:\n  approval: manual\n")
    path.write_text(text + "ui:\n  mlflow_url: http://mlflow.example:5000\n", encoding="utf-8")
    cli_json("train", "--as-of", day(30).isoformat(), cwd=root)
    run_cli("approve", "1", "--by", "setup", "--reason", "the first model", cwd=root)
    server = ServerProcess(root, env={"MODELLOOP_TOKEN": TOKEN})
    try:
        served = frame[(frame["event_time"] >= day(31)) & (frame["event_time"] < day(74))]
        for _, rows in served.groupby(served["event_time"].dt.floor("D")):
            answer = httpx.post(
                f"{server.url}/invocations",
                content=split_body(rows[["row_id", "event_time", *FEATURES]]),
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
        served[["row_id", "label"]].to_parquet(root / "labels.parquet", index=False)
        cli_json("labels", "ingest", "labels.parquet", cwd=root)
        for week in (38, 45, 52, 59, 66, 73):
            cli_json("monitor", "--as-of", day(week).isoformat(), "--no-retrain", cwd=root)
        trained = cli_json("train", "--as-of", day(74).isoformat(), cwd=root)
        assert trained["decision"]["outcome"] == "pending_approval", trained
        yield root, server
    finally:
        server.stop()


def champion(root: Path) -> int:
    status = cli_json("status", cwd=root)
    return int(status["champion"]["version"])


def test_the_dashboard_loads_offline_draws_its_charts_and_approves_and_rolls_back(
    project: tuple[Path, ServerProcess], browser: Any, screenshots: Path
) -> None:
    root, server = project
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    failed: list[str] = []
    page.on("response", lambda response: response.status >= 400 and failed.append(response.url))
    try:
        page.goto(f"{server.url}/ui", wait_until="load")
        assert page.inner_text("h1") == "synthetic-loop"
        assert page.inner_text(".champion-version") == "v1"
        assert page.inner_text("tr.role-champion td.version").startswith("v1")
        # Performance and label coverage, with the floor; the heat map's cells have room.
        assert drawn(page, "svg.chart.line") == 2
        assert drawn(page, "svg.chart.line polyline.series") >= 2
        assert drawn(page, "svg.chart.line line.floor") == 1
        assert drawn(page, "svg.chart.heat rect.cell") == 4 * 6
        assert drawn(page, "svg.chart.heat rect.cell.flagged") >= 2  # the drift after day 60
        assert drawn(page, "table.windows tr") == 1 + 6
        assert drawn(page, "ul.timeline > li") >= 3
        page.screenshot(path=str(screenshots / "ui-read-only.png"), full_page=True)

        # A window's report, through the server.
        with page.expect_navigation():
            page.click("table.windows a >> nth=0")
        assert page.title().startswith("Monitoring report: synthetic-loop")
        page.go_back()

        page.click("a.signin")
        page.fill("#who", "ana")
        page.fill("#token", TOKEN)
        with page.expect_navigation():
            page.click("form.signin button")
        assert page.inner_text(".who") == "ana"
        page.fill("#approve-reason-2", "the replay after the drift holds up")
        with page.expect_navigation(url="**/ui?done=approved"):
            page.click("form.approve button")
        assert "Approved" in page.inner_text(".done")
        assert page.inner_text("tr.role-champion td.version").startswith("v2")
        assert champion(root) == 2
        page.screenshot(path=str(screenshots / "ui-approved.png"), full_page=True)

        page.fill("#rollback-reason", "ops saw odd scores")
        with page.expect_navigation(url="**/ui?done=rolled_back"):
            page.click("form.rollback button")
        assert "Rolled back" in page.inner_text(".done")
        assert champion(root) == 1
        assert page.inner_text("ul.timeline > li >> nth=0").startswith("rolled_back")
        assert "ana" in page.inner_text("ul.timeline > li >> nth=0")
        page.screenshot(path=str(screenshots / "ui-rolled-back.png"), full_page=True)

        assert errors == [], (errors, failed)
        outside = [url for url in requests if not url.startswith(server.url + "/")]
        assert outside == []
    finally:
        context.close()
    history = cli_json("history", cwd=root)
    assert [(e["action"], e["version"], e["by"]) for e in history[:2]] == [
        ("rolled_back", 1, "ana"), ("approved", 2, "ana")]
