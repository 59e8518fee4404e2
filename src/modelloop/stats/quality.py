"""Data quality of a set of rows against a reference profile: values outside the reference
range, categories the reference never saw, missing shares.

Findings to flag, never errors: it runs on served traffic and on training data alike, where a
surprising value deserves a look, not a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelloop.stats.counts import FeatureCounts, count_frame

if TYPE_CHECKING:
    import pandas as pd  # only in annotations: pandas is imported by whoever hands a frame


def data_quality(profile: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    """Values outside the reference range, categories never seen in training, missing shares.

    Returns:
        `{"n_rows", "out_of_range", "unseen_categories", "missing"}`; a feature appears under
        `out_of_range` or `unseen_categories` only when it has at least one such value.
    """
    return quality_from_counts(profile, count_frame(profile, frame), len(frame))


def quality_from_counts(
    profile: Mapping[str, Any], counts: Mapping[str, FeatureCounts], n_rows: int
) -> dict[str, Any]:
    """`data_quality` of rows already counted against `profile` (features in profile order)."""
    out_of_range: dict[str, Any] = {}
    unseen: dict[str, Any] = {}
    missing: dict[str, float] = {}
    for name, feature in profile.get("features", {}).items():
        found = counts.get(name)
        if found is None:
            continue
        missing[name] = _share(found.missing, n_rows)
        if feature.get("kind") == "numeric":
            finding = _out_of_range(feature, found, n_rows)
            if finding:
                out_of_range[name] = finding
        elif found.unseen:
            unseen[name] = {
                "count": found.unseen,
                "share": _share(found.unseen, n_rows),
                "values": [value for value, _count in found.unseen_values],
            }
    return {
        "n_rows": n_rows,
        "out_of_range": out_of_range,
        "unseen_categories": unseen,
        "missing": missing,
    }


def _out_of_range(
    feature: Mapping[str, Any], found: FeatureCounts, n_rows: int
) -> dict[str, Any] | None:
    low, high = feature.get("min"), feature.get("max")
    count = found.below + found.above
    if low is None or high is None or found.low is None or found.high is None or count == 0:
        return None
    return {
        "count": count,
        "share": _share(count, n_rows),
        "min_seen": float(found.low),
        "max_seen": float(found.high),
        "reference_min": float(low),
        "reference_max": float(high),
    }


def _share(count: int, total: int) -> float:
    return float(count / total) if total else 0.0
