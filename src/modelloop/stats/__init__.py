"""Statistics shared by training, the gate and monitoring, below all three: the metrics, the
reference profile, a window's counts against it (in pandas or in SQL), the drift measures (PSI
and others), the reference's own variability, and data quality."""

from modelloop.stats.counts import (
    MAX_UNSEEN_LISTED,
    FeatureCounts,
    count_frame,
    count_values,
    merge_counts,
)
from modelloop.stats.distance import (
    DEFAULT_THRESHOLDS,
    METHODS,
    chi_square,
    is_drift,
    jensen_shannon,
    measure,
    wasserstein_normed,
)
from modelloop.stats.metrics import ESTIMABLE, METRICS, TASK_METRICS, estimate, score
from modelloop.stats.profile import (
    bin_counts,
    bin_shares,
    build_profile,
    psi,
    shares,
)
from modelloop.stats.quality import data_quality, quality_from_counts
from modelloop.stats.sql import CountQueries, DistinctValues, count_queries
from modelloop.stats.variability import adaptive_threshold, reference_variability

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ESTIMABLE",
    "MAX_UNSEEN_LISTED",
    "METHODS",
    "METRICS",
    "TASK_METRICS",
    "CountQueries",
    "DistinctValues",
    "FeatureCounts",
    "adaptive_threshold",
    "bin_counts",
    "bin_shares",
    "build_profile",
    "chi_square",
    "count_frame",
    "count_queries",
    "count_values",
    "data_quality",
    "estimate",
    "is_drift",
    "jensen_shannon",
    "measure",
    "merge_counts",
    "psi",
    "quality_from_counts",
    "reference_variability",
    "score",
    "shares",
    "wasserstein_normed",
]
