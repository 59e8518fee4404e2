"""The HTML monitoring report and its SVG charts: self-contained, escaped, readable."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pandas as pd

from modelloop.monitoring.drift import compute_drift
from modelloop.monitoring.report import render_html, svg_line_chart
from modelloop.stats import build_profile, data_quality

EVIL = "<script>alert('x')</script>"
SVG = "{http://www.w3.org/2000/svg}"


def monitoring_report() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n = 2000
    reference = pd.DataFrame(
        {
            "temp": rng.normal(55, 17, n),
            EVIL: rng.normal(0, 1, n),
            "carrier": rng.choice(["UA", "DL"], n),
        }
    )
    current = pd.DataFrame(
        {
            "temp": rng.normal(75, 17, n),
            EVIL: rng.normal(3, 1, n),
            "carrier": rng.choice(["UA", "DL", "<b>new</b>"], n),
        }
    )
    profile = build_profile(reference, ["temp", EVIL], ["carrier"])
    return {
        "model": "flight-delay",
        "as_of": "2013-07-07T00:00:00",
        "window": {"start": "2013-06-30T00:00:00", "end": "2013-07-07T00:00:00"},
        "n_rows": n,
        "n_labelled": 1500,
        "versions": {"3": 1200, "4": 800},
        "metric": {"name": "roc_auc", "value": 0.61, "floor": 0.65},
        "drift": compute_drift(profile, current, threshold=0.2).to_dict(),
        "quality": data_quality(profile, current),
        "breaches": ["roc_auc 0.610 below floor 0.650", "3 of 3 features drifted"],
        "alert": True,
        "trigger": {"reason": "performance", "detail": {"metric": "roc_auc"}},
    }


def svg_blocks(page: str) -> list[ET.Element]:
    blocks = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    return [
        ET.fromstring(block.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1)) for block in blocks
    ]


def test_report_escapes_names_from_the_data() -> None:
    page = render_html(monitoring_report())

    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert "<b>new</b>" not in page
    assert "&lt;b&gt;new&lt;/b&gt;" in page


def test_report_is_self_contained() -> None:
    page = render_html(monitoring_report())

    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "<link" not in page
    assert "@import" not in page


def test_report_shows_verdict_breaches_and_performance() -> None:
    page = render_html(monitoring_report())

    assert "ALERT" in page
    assert "flight-delay" in page
    assert "2013-06-30T00:00:00" in page
    assert "roc_auc 0.610 below floor 0.650" in page
    assert "0.6100" in page and "0.6500" in page
    assert "1500" in page


def test_report_highlights_drifted_features_with_a_chart_each() -> None:
    report = monitoring_report()
    page = render_html(report)

    drifted = report["drift"]["drifted"]
    assert set(drifted) == {"temp", EVIL, "carrier"}
    assert len(re.findall(r'<tr class="drifted">', page)) == 3
    charts = [svg for svg in svg_blocks(page) if "bars" in svg.get("class", "")]
    assert len(charts) == 3
    titles = [svg.find(f"{SVG}title").text for svg in charts]  # type: ignore[union-attr]
    assert titles[0].startswith(drifted[0])  # type: ignore[union-attr]
    # Every bin gets a reference and a current bar, and its label under the pair.
    temp = next(f for f in report["drift"]["features"] if f["feature"] == "temp")
    temp_chart = next(svg for svg in charts if svg.find(f"{SVG}title").text.startswith("temp"))  # type: ignore[union-attr]
    assert len(temp_chart.findall(f"{SVG}rect")) == 2 + 2 * len(temp["labels"])
    texts = {t.text for t in temp_chart.iter(f"{SVG}text")}
    assert "missing" in texts


def test_report_charts_at_most_six_features() -> None:
    report = monitoring_report()
    template = report["drift"]["features"][0]
    report["drift"]["features"] = [
        {**template, "feature": f"f{i}", "psi": 1.0 + i} for i in range(9)
    ]
    page = render_html(report)
    assert len([s for s in svg_blocks(page) if "bars" in s.get("class", "")]) == 6
    assert "f0" in page  # still in the table


def test_report_tolerates_missing_parts() -> None:
    page = render_html({"model": "m", "metric": {"name": "rmse", "value": None}, "drift": None})

    assert "OK" in page
    assert "n/a" in page
    assert "No features were checked" in page
    assert render_html({}).startswith("<!DOCTYPE html>")


def test_report_lists_quality_findings() -> None:
    report = monitoring_report()
    report["quality"]["out_of_range"] = {
        "temp": {
            "count": 12,
            "share": 0.006,
            "min_seen": -3.0,
            "max_seen": 140.0,
            "reference_min": 1.0,
            "reference_max": 100.0,
        }
    }
    page = render_html(report)

    assert "Out of the training range" in page
    assert "140" in page
    assert "Categories never seen in training" in page
    assert "&lt;b&gt;new&lt;/b&gt;" in page


def test_line_chart_leaves_gaps_for_missing_weeks() -> None:
    points = [("W1", 0.71), ("W2", 0.69), ("W3", None), ("W4", 0.66), ("W5", 0.70), ("W6", None)]
    svg = svg_line_chart(points, title="roc_auc by week", floor=0.65)
    root = ET.fromstring(svg.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))

    lines = root.findall(f"{SVG}polyline")
    assert [len(line.get("points", "").split()) for line in lines] == [2, 2]
    assert len(root.findall(f"{SVG}circle")) == 4
    floor = [line for line in root.findall(f"{SVG}line") if line.get("class") == "floor"]
    assert len(floor) == 1 and floor[0].get("stroke-dasharray")
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert {"W1", "W6", "roc_auc by week"} <= set(texts)
    # The floor sits inside the drawn range, with round ticks around it.
    assert any(text.startswith("floor") for text in texts)
    ticks = [float(t) for t in texts if re.fullmatch(r"-?\d+(\.\d+)?", t)]
    assert min(ticks) <= 0.65 and max(ticks) >= 0.71


def test_line_chart_survives_no_data_and_escapes_labels() -> None:
    svg = svg_line_chart([("<w1>", None), ("w2", float("nan"))], title="<t>")
    root = ET.fromstring(svg.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))

    assert root.findall(f"{SVG}polyline") == []
    assert "no data" in svg
    assert "<w1>" not in svg and "&lt;w1&gt;" in svg
    assert svg_line_chart([], title="empty").endswith("</svg>")
    single = svg_line_chart([("W1", 0.5)], title="one", floor=0.5)
    assert "<circle" in single
