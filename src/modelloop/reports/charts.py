"""The reports' charts, drawn server-side as inline SVG: a line over time and reference-vs-current
bars per bin.

Python decides where every point, bar and tick goes (the named tuples here: cheaper to
define than dataclasses, and reports are raced against the clock); the markup is the
`line_chart` and `bar_chart` macros of `templates/charts.svg.j2`, escaped like the rest of the
page. `svg_line_chart` and `svg_bar_chart` return one chart on its own.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

from modelloop.reports.environment import environment, finite

MEASURED_COLOUR = "#1c7ed6"
ESTIMATED_COLOUR = "#7048e8"
FLOOR_COLOUR = "#c92a2a"
REFERENCE_COLOUR = "#9aa5b1"
CURRENT_COLOUR = "#e8590c"


class Tick(NamedTuple):
    #: Pixel position along its axis.
    at: float
    label: str


class Marker(NamedTuple):
    x: float
    y: float
    #: Shown on hover: the x label and the value.
    tip: str


class Series(NamedTuple):
    name: str
    colour: str
    #: Points attributes of the polylines, one per unbroken run: a missing value is a gap.
    lines: list[str]
    markers: list[Marker]
    #: Estimated values are dashed with hollow markers, so they never pass for measured ones.
    estimated: bool = False


class LineChart(NamedTuple):
    title: str
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    series: list[Series]
    floor: Tick | None = None
    empty: bool = False
    #: Vertical marks at points, e.g. where the champion changed: (x, label).
    marks: tuple[Tick, ...] = ()


class Bar(NamedTuple):
    x: float
    y: float
    width: float
    height: float
    colour: str
    tip: str


class BinLabel(NamedTuple):
    x: float
    y: float
    text: str


class BarChart(NamedTuple):
    title: str
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    bars: list[Bar]
    #: A small chart (a table cell) has no axis, legend or bin labels; its bars carry tips.
    small: bool = False
    y_ticks: tuple[Tick, ...] = ()
    labels: tuple[BinLabel, ...] = ()


def line_chart(
    points: Sequence[tuple[str, float | None]],
    *,
    title: str,
    floor: float | None = None,
    floor_label: str = "floor",
    estimated: Sequence[float | None] | None = None,
    width: int = 720,
    height: int = 240,
    marks: Sequence[tuple[int, str]] = (),
) -> LineChart:
    """Where a line chart's parts go; a None value leaves a gap instead of a misleading line.

    Args:
        points: (x label, measured value) pairs in order, e.g. one per week.
        title: Shown above the chart and as the SVG's accessible title.
        floor: Drawn as a dashed line, e.g. the metric floor that triggers retraining.
        floor_label: What the line is called: "ceiling" for an error metric.
        estimated: A second series aligned with `points` (e.g. CBPE estimates), drawn dashed.
        marks: (index into `points`, label) of events drawn as vertical lines: a new champion.
    """
    left, right, top, bottom = 56.0, float(width - 28), 28.0, float(height - 44)
    if estimated:
        top = 40.0  # room for the legend
    plot_w, plot_h = max(right - left, 1.0), max(bottom - top, 1.0)
    measured = [finite(value) for _, value in points]
    guessed = [finite(value) for value in (estimated or [])][: len(points)]
    floor_value = finite(floor)
    known = [v for v in [*measured, *guessed] if v is not None]
    low, high, ticks, decimals = _axis(known + ([floor_value] if floor_value is not None else []))

    def x_of(i: int) -> float:
        return left + plot_w / 2 if len(points) <= 1 else left + plot_w * i / (len(points) - 1)

    def y_of(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    def series(name: str, values: list[float | None], colour: str, is_estimate: bool) -> Series:
        lines = [
            " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in run)
            for run in _runs(values)
            if len(run) > 1
        ]
        markers = [
            Marker(x_of(i), y_of(v), f"{points[i][0]}: {v:.4g}{' (estimated)' if is_estimate else ''}")
            for i, v in enumerate(values)
            if v is not None
        ]
        return Series(name, colour, lines, markers, is_estimate)

    drawn = [series("measured", measured, MEASURED_COLOUR, False)]
    if any(v is not None for v in guessed):
        drawn.append(series("estimated (CBPE)", guessed, ESTIMATED_COLOUR, True))
    step = max(1, math.ceil(len(points) / 12))
    x_ticks = [
        Tick(x_of(i), str(label))
        for i, (label, _) in enumerate(points)
        if i % step == 0 or i == len(points) - 1
    ]
    return LineChart(
        title=title,
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        y_ticks=[Tick(y_of(t), f"{t:.{decimals}f}") for t in ticks],
        x_ticks=x_ticks,
        series=drawn,
        floor=None
        if floor_value is None
        else Tick(y_of(floor_value), f"{floor_label} {floor_value:.{decimals + 1}f}"),
        empty=not known,
        marks=tuple(Tick(x_of(i), label) for i, label in marks if 0 <= i < len(points)),
    )


def bar_chart(
    labels: Sequence[str],
    reference: Sequence[float | None],
    current: Sequence[float | None],
    *,
    title: str,
    small: bool = False,
) -> BarChart:
    """Grouped bars of reference vs current share per bin: where the mass moved, at a glance."""
    n = min(len(labels), len(reference), len(current))
    ref = [max(finite(v) or 0.0, 0.0) for v in reference[:n]]
    cur = [max(finite(v) or 0.0, 0.0) for v in current[:n]]
    high = max([*ref, *cur, 0.0]) or 1.0
    high = min(1.0, math.ceil(high * 10) / 10) if high > 0.1 else math.ceil(high * 100) / 100
    # Many bins (a categorical feature with 50 values) narrow the bars rather than widen the
    # chart past a table cell or a screen; the bin labels then thin out so they do not overlap.
    if small:
        group, left, top, height = min(12.0, max(3.0, 150 / max(n, 1))), 1.0, 2.0, 36
        width = max(60, int(left * 2 + group * max(n, 1)))
        bottom = float(height - 2)
    else:
        group, left, top, height = min(44.0, max(12.0, 880 / max(n, 1))), 64.0, 40.0, 300
        width = max(360, int(left + 16 + group * max(n, 1)))
        bottom = float(height - 90)
    label_every = math.ceil(22 / group)  # rotated 11px labels need ~22px between them
    plot_h = bottom - top
    bar = (group - (min(2.0, group / 4) if small else min(8.0, group / 4))) / 2
    bars: list[Bar] = []
    bin_labels: list[BinLabel] = []
    for i in range(n):
        x0 = left + group * i + (1 if small else 4)
        for j, (value, colour, name) in enumerate(
            ((ref[i], REFERENCE_COLOUR, "reference"), (cur[i], CURRENT_COLOUR, "current"))
        ):
            h = plot_h * min(value, high) / high
            bars.append(Bar(x0 + j * bar, bottom - h, bar, h, colour, f"{labels[i]} {name}: {value:.1%}"))
        if not small and i % label_every == 0:
            bin_labels.append(BinLabel(x0 + bar, bottom + 12, _shorten(str(labels[i]))))
    y_ticks = (
        []
        if small
        else [
            Tick(top + plot_h * (1 - fraction), f"{fraction * high:.{0 if high >= 0.1 else 1}%}")
            for fraction in (0.0, 0.5, 1.0)
        ]
    )
    return BarChart(
        title=title,
        width=width,
        height=height,
        left=left,
        right=float(width - (1 if small else 16)),
        top=top,
        bottom=bottom,
        bars=bars,
        small=small,
        y_ticks=tuple(y_ticks),
        labels=tuple(bin_labels),
    )


class Cell(NamedTuple):
    x: float
    y: float
    width: float
    height: float
    colour: str
    tip: str
    #: Past its threshold: outlined, so it reads without colour too.
    flagged: bool
    #: Where the cell's window is shown in full (its report), or "".
    href: str = ""


class Swatch(NamedTuple):
    x: float
    colour: str
    label: str


class HeatMap(NamedTuple):
    title: str
    width: int
    height: int
    left: float
    top: float
    cells: list[Cell]
    rows: list[Tick]
    columns: list[Tick]
    legend: list[Swatch]
    empty: bool = False


def heat_map(
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    title: str,
    tips: Sequence[Sequence[str]] | None = None,
    flagged: Sequence[Sequence[bool]] | None = None,
    links: Sequence[str] | None = None,
    cell: float = 18.0,
) -> HeatMap:
    """A grid of rows (features) by columns (monitoring windows), each cell coloured by its value
    as a share of its threshold: pale under half, amber near it, red past it, grey when unknown.

    Args:
        values: `values[r][c]`, the value relative to its threshold (1.0 = at the threshold).
        tips: Hover text per cell. flagged: cells outlined (drifted). links: per column, a URL.
    """
    longest = max((len(r) for r in rows), default=4)
    left = float(min(200, 12 + 7 * longest))
    top = 84.0
    step = max(1, math.ceil(len(columns) / 16))
    width_cells = cell * max(len(columns), 1)
    # Room for the last column's slanted label, and at least the title's and legend's width.
    width = max(int(left + width_cells + 48), 7 * len(title) + 8, 560)
    height = int(top + cell * max(len(rows), 1) + 12)
    cells: list[Cell] = []
    for r, _ in enumerate(rows):
        for c, _ in enumerate(columns):
            value = finite(values[r][c]) if c < len(values[r]) else None
            cells.append(Cell(
                x=left + c * cell,
                y=top + r * cell,
                width=cell - 1,
                height=cell - 1,
                colour=_heat_colour(value),
                tip=tips[r][c] if tips else f"{rows[r]} {columns[c]}",
                flagged=bool(flagged[r][c]) if flagged else False,
                href=(links[c] if links and c < len(links) else ""),
            ))
    return HeatMap(
        title=title,
        width=width,
        height=height,
        left=left,
        top=top,
        cells=cells,
        rows=[Tick(top + r * cell + cell / 2 + 4, _shorten(name, 28)) for r, name in enumerate(rows)],
        columns=[
            Tick(left + c * cell + cell / 2, label)
            for c, label in enumerate(columns)
            if c % step == 0 or c == len(columns) - 1
        ],
        legend=[
            Swatch(4 + 88 * i, _heat_colour(value), label)
            for i, (value, label) in enumerate(
                ((0.0, "none"), (0.5, "½ threshold"), (1.0, "threshold"), (1.5, "1.5×"), (2.0, "2× +"))
            )
        ]
        + [Swatch(4 + 88 * 5, UNKNOWN_COLOUR, "not measured")],
        empty=not rows or not columns,
    )


#: From "nothing moved" to "twice the threshold": white, yellow, amber, orange, red, dark red.
_HEAT = ((0.0, (248, 249, 250)), (0.5, (255, 236, 153)), (0.8, (255, 192, 120)),
         (1.0, (240, 140, 60)), (1.5, (214, 51, 51)), (2.0, (140, 20, 20)))
UNKNOWN_COLOUR = "#cbd2d9"


def _heat_colour(value: float | None) -> str:
    if value is None:
        return UNKNOWN_COLOUR
    value = max(0.0, value)
    for (low, a), (high, b) in itertools.pairwise(_HEAT):
        if value <= high:
            t = (value - low) / (high - low)
            return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*_HEAT[-1][1])


def svg_line_chart(
    points: Sequence[tuple[str, float | None]],
    *,
    title: str,
    floor: float | None = None,
    floor_label: str = "floor",
    estimated: Sequence[float | None] | None = None,
    width: int = 720,
    height: int = 240,
) -> str:
    """One line chart as an inline `<svg>` element (see `line_chart` for the arguments)."""
    chart = line_chart(
        points,
        title=title,
        floor=floor,
        floor_label=floor_label,
        estimated=estimated,
        width=width,
        height=height,
    )
    return str(environment().get_template("charts.svg.j2").module.line_chart(chart)).strip()  # type: ignore[attr-defined]


def svg_bar_chart(
    labels: Sequence[str],
    reference: Sequence[float | None],
    current: Sequence[float | None],
    *,
    title: str,
    small: bool = False,
) -> str:
    """One reference-vs-current bar chart as an inline `<svg>` element."""
    chart = bar_chart(labels, reference, current, title=title, small=small)
    return str(environment().get_template("charts.svg.j2").module.bar_chart(chart)).strip()  # type: ignore[attr-defined]


def _axis(values: Sequence[float]) -> tuple[float, float, list[float], int]:
    """A y range padded to round ticks, so the eye can read values off the chart."""
    if not values:
        return 0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0], 2
    low, high = min(values), max(values)
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    low = math.floor(low / step) * step
    high = math.ceil(high / step) * step
    count = round((high - low) / step)
    ticks = [low + k * step for k in range(count + 1)]
    decimals = max(0, -math.floor(math.log10(step)))
    return low, high, ticks, decimals


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """The unbroken runs of known values, with their positions."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, value))
    if current:
        runs.append(current)
    return runs


def _shorten(label: str, limit: int = 18) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
