"""Monitoring: reference profiles, drift (PSI with point-mass bins), data quality, performance
on late labels, and the reports."""

from modelloop.monitoring.drift import (
    DriftResult,
    FeatureDrift,
    compute_drift,
    data_quality,
    merge_drift,
)
from modelloop.monitoring.pipeline import MonitoringResult, labelled, run_monitoring
from modelloop.monitoring.profile import bin_shares, build_profile, psi
from modelloop.monitoring.report import render_html, svg_line_chart

__all__ = [
    "DriftResult",
    "FeatureDrift",
    "MonitoringResult",
    "bin_shares",
    "build_profile",
    "compute_drift",
    "data_quality",
    "labelled",
    "merge_drift",
    "psi",
    "render_html",
    "run_monitoring",
    "svg_line_chart",
]
