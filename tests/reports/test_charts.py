"""The SVG charts: gaps for missing values, a dashed floor, estimates told apart, escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from modelloop.reports import svg_bar_chart, svg_line_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def test_line_chart_leaves_gaps_for_missing_weeks() -> None:
    points = [("W1", 0.71), ("W2", 0.69), ("W3", None), ("W4", 0.66), ("W5", 0.70), ("W6", None)]
    root = parse(svg_line_chart(points, title="roc_auc by week", floor=0.65))

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


def test_estimated_values_are_a_dashed_series_with_hollow_points_and_a_legend() -> None:
    points = [("W1", 0.71), ("W2", None), ("W3", None)]
    root = parse(svg_line_chart(points, title="t", estimated=[None, 0.69, 0.67]))

    estimated = [p for p in root.findall(f"{SVG}polyline") if p.get("class") == "estimated"]
    assert len(estimated) == 1 and estimated[0].get("stroke-dasharray")
    hollow = [c for c in root.findall(f"{SVG}circle") if c.get("class") == "estimated"]
    assert len(hollow) == 2 and all(c.get("fill") == "#ffffff" for c in hollow)
    assert "estimated (CBPE)" in {t.text for t in root.iter(f"{SVG}text")}
    tips = [t.text or "" for c in hollow for t in c.iter(f"{SVG}title")]
    assert all(tip.endswith("(estimated)") for tip in tips)


def test_line_chart_survives_no_data_and_escapes_labels() -> None:
    svg = svg_line_chart([("<w1>", None), ("w2", float("nan"))], title="<t>")
    root = parse(svg)

    assert root.findall(f"{SVG}polyline") == []
    assert "no data" in svg
    assert "<w1>" not in svg and "&lt;w1&gt;" in svg
    assert svg_line_chart([], title="empty").endswith("</svg>")
    single = svg_line_chart([("W1", 0.5)], title="one", floor=0.5)
    assert "<circle" in single


def test_bar_chart_has_a_pair_of_bars_per_bin_and_small_charts_keep_the_numbers_in_tips() -> None:
    labels, reference, current = ["a", "<b>", "c"], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]
    big = parse(svg_bar_chart(labels, reference, current, title="x"))
    small = parse(svg_bar_chart(labels, reference, current, title="x", small=True))

    assert len(big.findall(f"{SVG}rect")) == 2 + 2 * 3  # the legend's two, then the bars
    assert {"a", "<b>", "c"} <= {t.text for t in big.iter(f"{SVG}text")}
    bars = small.findall(f"{SVG}rect")
    assert len(bars) == 6 and small.findall(f"{SVG}text") == []
    tips = [bar.find(f"{SVG}title").text for bar in bars]  # type: ignore[union-attr]
    assert tips[0] == "a reference: 50.0%" and tips[5] == "c current: 50.0%"
    # Heights follow the shares: c's current bar is as tall as a's reference bar.
    assert float(bars[0].get("height", 0)) == float(bars[5].get("height", 0)) > 0


def test_many_bins_narrow_the_bars_instead_of_widening_the_page() -> None:
    labels = [f"airport-{i}" for i in range(52)]
    shares = [1 / 52] * 52
    small = parse(svg_bar_chart(labels, shares, shares, title="dest", small=True))
    big = parse(svg_bar_chart(labels, shares, shares, title="dest"))

    assert int(small.get("width", 0)) <= 160
    assert int(big.get("width", 0)) <= 1000
    assert len(big.findall(f"{SVG}rect")) == 2 + 2 * 52  # every bin still drawn
    bin_labels = [t for t in big.iter(f"{SVG}text") if (t.text or "").startswith("airport-")]
    assert 10 <= len(bin_labels) < 52  # thinned so they do not overlap
