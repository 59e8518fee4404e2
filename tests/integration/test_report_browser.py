"""The reports in a real browser: the Debian Chromium, driven by Playwright, opens each page as a
file and must fetch nothing else, log no error, and draw every SVG chart.

CI installs `chromium` with apt-get (.ci/run); Playwright's own browser download is not used.
Screenshots go to $MODELLOOP_SCREENSHOTS (CI keeps that folder) or the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelloop.reports import render_demo, render_monitoring
from tests.reports.payloads import demo, monitoring

pytestmark = pytest.mark.integration

def open_page(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    """The page loaded from `path`, with every request it made and every error it logged."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri(), wait_until="load")
    return page, requests, errors


def boxes(page: Any, selector: str) -> list[dict[str, float]]:
    found = [element.bounding_box() for element in page.query_selector_all(selector)]
    return [box for box in found if box is not None]


def drawn(page: Any, selector: str) -> int:
    """How many elements matching `selector` take up room on the page."""
    return sum(1 for box in boxes(page, selector) if box["width"] > 0 and box["height"] > 0)


def test_monitoring_report_renders_offline_with_its_charts(
    browser: Any, tmp_path: Path, screenshots: Path
) -> None:
    path = tmp_path / "monitor.html"
    path.write_text(render_monitoring(monitoring()), encoding="utf-8")
    page, requests, errors = open_page(browser, path)
    try:
        assert requests == [path.as_uri()]
        assert errors == []
        assert page.title() == "Monitoring report: flight-delays"
        assert page.inner_text(".verdict") == "ALERT"

        # Performance over time: the measured line, the estimated one, the dashed floor.
        assert drawn(page, "svg.chart.line") == 1
        measured = page.query_selector_all("svg.chart.line polyline.series")
        assert len(measured) == 2 and all(p.get_attribute("points").count(",") == 2 for p in measured)
        assert drawn(page, "svg.chart.line polyline.series") == 2
        assert drawn(page, "svg.chart.line polyline.estimated") == 1
        assert drawn(page, "svg.chart.line line.floor") == 1
        assert drawn(page, "svg.chart.line circle") == 4 + 4

        # A small reference-vs-current chart in every drift row (and the prediction's), and the
        # drifted features drawn large with bars that have height.
        assert drawn(page, "table.drift svg.small") == 5
        assert drawn(page, "table.prediction-drift svg.small") == 1
        assert drawn(page, ".charts svg.bars") == 3
        assert drawn(page, ".charts svg.bars rect") > 3 * 8
        # The hostile feature name is text on the page, not a script that ran.
        assert "<script>alert('x')</script>" in page.inner_text("table.drift")

        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, f"the report is {width}px wide: wider than a laptop screen"
        page.screenshot(path=str(screenshots / "monitoring-report.png"), full_page=True)
    finally:
        page.close()


def test_demo_summary_renders_offline_with_its_chart(
    browser: Any, tmp_path: Path, screenshots: Path
) -> None:
    path = tmp_path / "demo-summary.html"
    payload = demo()
    path.write_text(render_demo(payload), encoding="utf-8")
    page, requests, errors = open_page(browser, path)
    try:
        assert requests == [path.as_uri()]
        assert errors == []
        assert drawn(page, "svg.chart.line") == 1
        # Weeks 1-2 joined by a line, a gap for week 3 (no metric), week 4 a lone point.
        lines = page.query_selector_all("svg.chart.line polyline.series")
        assert [p.get_attribute("points").count(",") for p in lines] == [2]
        assert drawn(page, "svg.chart.line polyline.series") == 1
        assert drawn(page, "svg.chart.line circle") == 3
        assert drawn(page, "svg.chart.line line.floor") == 1
        assert drawn(page, "table.weeks tr") == 1 + len(payload["weeks"])
        links = [a.get_attribute("href") for a in page.query_selector_all("table.weeks a")]
        assert links == [week["report"] for week in payload["weeks"]]
        assert drawn(page, "ul.decisions > li") == len(payload["decisions"])
        page.screenshot(path=str(screenshots / "demo-summary.png"), full_page=True)
    finally:
        page.close()
