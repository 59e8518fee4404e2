"""The monitoring report and the demo summary: every section when its data is there and none of
it when it is not, hostile text escaped, numbers written for people, nothing fetched."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from modelloop.reports import render_demo, render_monitoring
from modelloop.reports.environment import count, measure, share, when
from tests.reports.payloads import EVIL, demo, monitoring

#: Text that shows a section is on the page, for each optional part of the payload.
SECTIONS: dict[str, str] = {
    "reference": "<h2>Reference</h2>",
    "metrics": "<h3>All metrics",
    "coverage": "Label coverage",
    "history": "Performance over time",
    "segments": "<h2>Segments</h2>",
    "drift": "Feature drift",
    "quality": "<h2>Data quality</h2>",
    "versions": "Model versions that served the window",
    "alerts": 'class="alerts"',
    "trigger": 'class="trigger"',
}


def self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\bsrc\s*=", page)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    assert "url(" not in page and "@font-face" not in page
    assert page.count("<style>") == 1  # all CSS inline, in one place


def test_every_section_of_a_full_payload_is_on_the_page() -> None:
    page = render_monitoring(monitoring())

    for key, marker in SECTIONS.items():
        assert marker in page, key
    for marker in ("Prediction drift", "<h2>Volume</h2>", "Missing values", "Out of the training range",
                   "Categories never seen in training", "Data contract violations",
                   "Where the drifted features moved"):
        assert marker in page, marker


@pytest.mark.parametrize("key", sorted(SECTIONS))
@pytest.mark.parametrize("how", ["absent", "null"])
def test_a_missing_section_is_left_out_and_the_rest_still_renders(key: str, how: str) -> None:
    payload = monitoring()
    if how == "absent":
        del payload[key]
    else:
        payload[key] = None
    page = render_monitoring(payload)

    assert SECTIONS[key] not in page
    others = [marker for other, marker in SECTIONS.items() if other != key and other != "history"]
    assert all(marker in page for marker in others)
    assert page.rstrip().endswith("</html>")


def test_nested_optional_parts_are_left_out_cleanly() -> None:
    payload = monitoring()
    payload["metric"]["estimated"] = None
    payload["drift"]["prediction"] = None
    payload["quality"]["volume"] = None
    payload["quality"]["contract"] = {}
    for segment in payload["segments"]:
        segment["estimated"] = None
    del payload["history"]
    page = render_monitoring(payload)

    assert "CBPE" not in page and 'class="estimated"' not in page and "estimated, not measured" not in page
    assert "Prediction drift" not in page
    assert "<h2>Volume</h2>" not in page and "Data contract violations" not in page


def test_the_payload_the_pipeline_writes_today_renders() -> None:
    """Breaches as plain strings, missing shares as floats, no method or threshold per feature."""
    payload = monitoring()
    payload["breaches"] = ["roc_auc 0.612 below the floor 0.650"]
    payload["quality"]["missing"] = {"temp": 0.25}
    for feature in payload["drift"]["features"]:
        for key in ("method", "value", "threshold", "threshold_source", "counted", "ignored"):
            feature.pop(key)
    payload["seasonal"] = ["month"]
    page = render_monitoring(payload)

    assert "roc_auc 0.612 below the floor 0.650" in page
    assert ">25.0%<" in page
    month = re.search(r"<tr class=\"(\w+)\"><td>month</td>", page)
    assert month and month.group(1) == "greyed"  # seasonal: shown, not counted


def test_verdict_breaches_and_the_gate_decision_come_first() -> None:
    page = render_monitoring(monitoring())
    header = page.split("</header>")[0]

    assert '<span class="verdict alert">ALERT</span>' in header
    assert "roc_auc 0.612 below the floor 0.650" in header
    assert "Retraining fired" in header and "Candidate v9" in header and ">rejected<" in header
    assert "#41" in header and "#40" in header


def test_a_run_that_retrained_nothing_says_why() -> None:
    payload = monitoring()
    payload["breaches"] = []
    payload["trigger"] = {"fired": False, "reason": "drift", "kinds": ["drift"],
                          "skipped": "cooldown: last retraining 2 days ago", "version": None,
                          "decision": None}
    page = render_monitoring(payload)

    assert '<span class="verdict ok">OK</span>' in page and "No breaches." in page
    assert "No retraining</strong>: cooldown: last retraining 2 days ago." in page


def test_reference_and_its_fallback_note_are_shown() -> None:
    page = render_monitoring(monitoring())

    assert "Compared with the same period last year." in page
    assert "no traffic a year ago: fell back to the training data" in page


def test_numbers_are_written_for_people() -> None:
    page = render_monitoring(monitoring())

    assert "12,345 rows scored" in page and "9,876 labelled" in page
    assert '<th>roc_auc</th><td class="num">0.612</td>' in page  # 3 decimals
    assert "roc_auc, estimated (CBPE)</th><td class=\"num\">0.634</td>" in page
    assert ">98.8%<" in page  # label coverage
    assert ">&lt;0.1%<" in page  # a tiny share is not 0.0%
    assert "expected about 20,000 (between 15,000 and 25,000)" in page
    assert ">81.0%<" in page  # v7's share of the window


def test_drift_table_shows_method_threshold_source_and_greys_what_does_not_count() -> None:
    page = render_monitoring(monitoring())
    table = page.split('<table class="drift">')[1].split("</table>")[0]
    classes = {name: css for css, name in re.findall(r'<tr class="(\w+)"><td>([^<]*)</td>', table)}

    assert classes["temp"] == "drifted" and classes["month"] == "greyed"
    assert classes["row_hash"] == "greyed" and classes["carrier"] == "stable"
    assert "0.100 <span class=\"muted\">adaptive</span>" in page
    assert "0.250 <span class=\"muted\">override</span>" in page
    assert "<td>jensen_shannon</td>" in page and ">ignored<" in page and ">drifted, not counted<" in page


def test_hostile_text_is_escaped_everywhere() -> None:
    payload = monitoring()
    payload["model"] = EVIL
    payload["reference"]["note"] = EVIL
    payload["segments"][0]["value"] = EVIL
    payload["trigger"]["reason"] = EVIL
    payload["metrics"] = {EVIL: 0.5}
    payload["quality"]["unseen_categories"]["carrier"]["values"] = [EVIL]
    payload["drift"]["features"][0]["labels"][0] = EVIL
    payload["breaches"][0]["message"] = EVIL
    payload["breaches"][0]["kind"] = '"><script>'
    page = render_monitoring(payload)

    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") >= 9
    self_contained(page)


@pytest.mark.parametrize("render", ["monitoring", "demo"])
def test_pages_fetch_nothing_and_carry_their_css(render: str) -> None:
    page = render_monitoring(monitoring()) if render == "monitoring" else render_demo(demo())
    self_contained(page)
    for href in re.findall(r'href="([^"]*)"', page):
        assert re.fullmatch(r"[\w.-]+\.html", href), href  # a sibling report, nothing else


def test_demo_summary_has_the_chart_every_week_and_every_decision() -> None:
    payload = demo()
    page = render_demo(payload)

    assert "<title>flight-delays: a year in production (NYC flights 2013): demo</title>" in page
    assert "weekly roc_auc of the serving champion" in page
    weeks = page.split('<table class="weeks">')[1].split("</table>")[0]
    assert weeks.count("<tr") == 1 + len(payload["weeks"])
    assert '<a href="monitor-20130307T000000.html">report</a>' in weeks
    assert "temp drifted &lt;script&gt;" in weeks and '<span class="tag drift">drift</span>' in weeks
    assert "v2 promoted (0.712 vs v1 0.690)" in weeks
    assert ">n/a<" in weeks  # the week without a metric
    assert ">4,100<" in weeks
    decisions = page.split('<ul class="decisions">')[1]
    assert '<span class="tag rejected">rejected</span>' in decisions
    assert "roc_auc 0.640 &lt; floor 0.650: failed" in decisions
    assert "<script" not in page


def test_demo_links_only_to_a_report_file_beside_it() -> None:
    payload = demo()
    payload["weeks"][0]["report"] = "javascript:alert(1)"
    payload["weeks"][1]["report"] = "/tmp/reports/monitor-1.html"
    payload["weeks"][2]["report"] = None
    page = render_demo(payload)

    assert "javascript:" not in page
    assert '<a href="monitor-1.html">' in page
    assert page.count("<a ") == len(payload["weeks"]) - 2


def test_an_empty_demo_still_renders() -> None:
    page = render_demo({})
    assert "No week was monitored." in page and "No gate decisions." in page
    self_contained(page)


@pytest.mark.parametrize(
    ("function", "value", "shown"),
    [
        (measure, 0.61234, "0.612"),
        (measure, None, "n/a"),
        (measure, float("nan"), "n/a"),
        (count, 1234567, "1,234,567"),
        (count, 20000.0, "20,000"),
        (share, 0.98765, "98.8%"),
        (share, 0.0004, "<0.1%"),
        (share, 0.0, "0.0%"),
        (when, "2013-06-30T00:00:00", "2013-06-30"),
        (when, "2013-06-30T14:05:00+00:00", "2013-06-30 14:05"),
        (when, "not a date", "not a date"),
    ],
)
def test_formats(function: Any, value: Any, shown: str) -> None:
    assert function(value) == shown


def test_importing_the_package_compiles_nothing_and_imports_no_jinja2() -> None:
    probe = "import sys, json, modelloop.reports\nprint(json.dumps('jinja2' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False
