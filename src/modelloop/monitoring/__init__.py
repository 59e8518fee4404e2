"""Monitoring: drift, data quality, performance on late labels, and the policy-free verdicts;
the statistics are `modelloop.stats`, computed where the log lives, and the pages
`modelloop.reports`."""

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
    "run_monitoring",
]
