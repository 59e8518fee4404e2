"""The monitoring report on what the monitoring code really computes (drift and data quality of
real frames): escaped, self-contained, and showing what crossed which line."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pandas as pd

from modelloop.monitoring.drift import compute_drift
from modelloop.reports import render_monitoring
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
        "trigger": {"fired": True, "reason": "performance", "kinds": ["performance"]},
    }


def svg_blocks(page: str) -> list[ET.Element]:
    blocks = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    return [
        ET.fromstring(block.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1)) for block in blocks
    ]


def big_bar_charts(page: str) -> list[ET.Element]:
    return [svg for svg in svg_blocks(page) if svg.get("class") == "chart bars"]


def test_report_escapes_names_from_the_data() -> None:
    page = render_monitoring(monitoring_report())

    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert "<b>new</b>" not in page
    assert "&lt;b&gt;new&lt;/b&gt;" in page


def test_report_is_self_contained() -> None:
    page = render_monitoring(monitoring_report())

    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "<link" not in page
    assert "@import" not in page


def test_report_shows_verdict_breaches_and_performance() -> None:
    page = render_monitoring(monitoring_report())

    assert "ALERT" in page
    assert "flight-delay" in page
    assert '<time datetime="2013-06-30T00:00:00">2013-06-30</time>' in page
    assert "roc_auc 0.610 below floor 0.650" in page
    assert ">0.610<" in page and ">0.650<" in page
    assert "1,500" in page
    assert "Retraining fired" in page


def test_report_highlights_drifted_features_with_a_chart_each() -> None:
    report = monitoring_report()
    page = render_monitoring(report)

    drifted = report["drift"]["drifted"]
    assert set(drifted) == {"temp", EVIL, "carrier"}
    assert len(re.findall(r'<tr class="drifted">', page)) == 3
    charts = big_bar_charts(page)
    assert len(charts) == 3
    titles = [svg.find(f"{SVG}title").text or "" for svg in charts]  # type: ignore[union-attr]
    largest = max(report["drift"]["features"], key=lambda f: f["psi"])["feature"]
    assert titles[0].startswith(largest)
    # Every bin gets a reference and a current bar, and its label under the pair.
    temp = next(f for f in report["drift"]["features"] if f["feature"] == "temp")
    temp_chart = next(svg for svg in charts if (svg.find(f"{SVG}title").text or "").startswith("temp"))  # type: ignore[union-attr]
    assert len(temp_chart.findall(f"{SVG}rect")) == 2 + 2 * len(temp["labels"])
    texts = {t.text for t in temp_chart.iter(f"{SVG}text")}
    assert "missing" in texts


def test_report_charts_at_most_six_features_large_and_every_feature_small() -> None:
    report = monitoring_report()
    template = report["drift"]["features"][0]
    report["drift"]["features"] = [
        {**template, "feature": f"f{i}", "psi": 1.0 + i} for i in range(9)
    ]
    page = render_monitoring(report)
    assert len(big_bar_charts(page)) == 6
    small = [s for s in svg_blocks(page) if "small" in s.get("class", "")]
    assert len(small) == 9
    assert "f0" in page  # still in the table


def test_report_leaves_out_what_the_run_did_not_measure() -> None:
    page = render_monitoring({"model": "m", "metric": {"name": "rmse", "value": None}, "drift": None})

    assert "OK" in page
    assert "n/a" in page
    assert "Feature drift" not in page and "Data quality" not in page
    assert render_monitoring({}).startswith("<!DOCTYPE html>")


def test_report_says_why_a_feature_list_is_empty() -> None:
    page = render_monitoring({"model": "m", "drift": {"threshold": 0.2, "features": []}})

    assert "No features were checked" in page


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
    page = render_monitoring(report)

    assert "Out of the training range" in page
    assert "-3 to 140" in page and "1 to 100" in page
    assert "Categories never seen in training" in page
    assert "&lt;b&gt;new&lt;/b&gt;" in page
