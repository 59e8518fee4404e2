"""Monitoring: drift (PSI with point-mass bins), data quality, performance on late labels, and
the reports; the statistics themselves are `modelloop.stats`, computed where the log lives."""

from modelloop.monitoring.breaches import Breach, BreachKind
from modelloop.monitoring.drift import (
    DriftResult,
    FeatureDrift,
    compute_drift,
    drift_from_counts,
    merge_drift,
)
from modelloop.monitoring.pipeline import MonitoringResult, ProfileSource, run_monitoring
from modelloop.monitoring.profiles import ProfileCache
from modelloop.monitoring.report import render_html, svg_line_chart
from modelloop.monitoring.window import WindowStats, measure_window

__all__ = [
    "Breach",
    "BreachKind",
    "DriftResult",
    "FeatureDrift",
    "MonitoringResult",
    "ProfileCache",
    "ProfileSource",
    "WindowStats",
    "compute_drift",
    "drift_from_counts",
    "measure_window",
    "merge_drift",
    "render_html",
    "run_monitoring",
    "svg_line_chart",
]
