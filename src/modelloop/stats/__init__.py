"""Statistics shared by training, the gate and monitoring, below all three: the metrics, the
reference profile, a window's counts against it (in pandas or in SQL), PSI and data quality."""

from modelloop.stats.counts import (
    MAX_UNSEEN_LISTED,
    FeatureCounts,
    count_frame,
    count_values,
    merge_counts,
)
from modelloop.stats.metrics import METRICS, score
from modelloop.stats.profile import (
    bin_counts,
    bin_shares,
    build_profile,
    psi,
    shares,
)
from modelloop.stats.quality import data_quality, quality_from_counts
from modelloop.stats.sql import CountQueries, DistinctValues, count_queries

__all__ = [
    "MAX_UNSEEN_LISTED",
    "METRICS",
    "CountQueries",
    "DistinctValues",
    "FeatureCounts",
    "bin_counts",
    "bin_shares",
    "build_profile",
    "count_frame",
    "count_queries",
    "count_values",
    "data_quality",
    "merge_counts",
    "psi",
    "quality_from_counts",
    "score",
    "shares",
]
