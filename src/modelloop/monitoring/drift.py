"""Feature drift of served data: how far each feature's distribution moved from the reference
profile of the model version that served it.

A finding to flag, never an error: drift feeds the retraining trigger and the report. It is
computed from a window's counts per reference bin (`modelloop.stats.counts`), which monitoring
takes in SQL where the log lives; `compute_drift` gives the same result on a pandas frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelloop.stats import FeatureCounts, count_frame, psi

if TYPE_CHECKING:
    import pandas as pd  # only in annotations: pandas is imported by whoever hands a frame


@dataclass(frozen=True)
class FeatureDrift:
    """How far one feature's current distribution moved from its reference bins."""

    feature: str
    kind: str
    psi: float
    drifted: bool
    n: int
    labels: list[str]
    reference_shares: list[float]
    current_shares: list[float]


@dataclass(frozen=True)
class DriftResult:
    """Drift of every profiled feature, worst first, so a reader starts with what moved most."""

    features: list[FeatureDrift]
    threshold: float
    n_rows: int

    @property
    def drifted(self) -> list[str]:
        """Names of the features whose PSI is above the threshold, worst first."""
        return [item.feature for item in self.features if item.drifted]

    @property
    def share_drifted(self) -> float:
        """Share of the checked features that drifted (0.0 when none were checked)."""
        if not self.features:
            return 0.0
        return len(self.drifted) / len(self.features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored with the monitoring result and rendered in the report."""
        return {
            "threshold": float(self.threshold),
            "n_rows": int(self.n_rows),
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "features": [asdict(item) for item in self.features],
        }


def compute_drift(
    profile: Mapping[str, Any], frame: pd.DataFrame, *, threshold: float
) -> DriftResult:
    """PSI of every profiled feature present in `frame`; a feature drifts when PSI > threshold.

    A feature absent from `frame` is skipped rather than failed: a log written before a feature
    existed should still be monitored on the features it has.
    """
    return drift_from_counts(profile, count_frame(profile, frame), len(frame), threshold=threshold)


def drift_from_counts(
    profile: Mapping[str, Any],
    counts: Mapping[str, FeatureCounts],
    n_rows: int,
    *,
    threshold: float,
) -> DriftResult:
    """`compute_drift` of `n_rows` rows already counted against `profile`."""
    results: list[FeatureDrift] = []
    for name, feature in profile.get("features", {}).items():
        found = counts.get(name)
        if found is None:
            continue
        reference = np.asarray(feature["shares"], dtype=float)
        current = found.shares()
        # No rows means no evidence of drift, not the maximal drift that PSI of zeros would give.
        value = psi(reference, current) if n_rows else 0.0
        results.append(
            FeatureDrift(
                feature=str(name),
                kind=str(feature["kind"]),
                psi=value,
                drifted=value > threshold,
                n=n_rows,
                labels=[str(label) for label in feature["labels"]],
                reference_shares=[float(v) for v in reference],
                current_shares=[float(v) for v in current],
            )
        )
    return DriftResult(features=_worst_first(results), threshold=threshold, n_rows=n_rows)


def merge_drift(parts: Sequence[DriftResult], *, threshold: float) -> DriftResult:
    """Combine drift measured on disjoint row groups, such as rows served by different versions.

    Each part was compared with its own version's profile, so bins differ between parts and
    cannot be added up: PSI is averaged weighted by rows, and the bars shown are the largest
    part's.
    """
    live = [part for part in parts if part.n_rows > 0]
    by_feature: dict[str, list[FeatureDrift]] = {}
    for part in live:
        for item in part.features:
            if item.n > 0:
                by_feature.setdefault(item.feature, []).append(item)
    merged: list[FeatureDrift] = []
    for name, items in by_feature.items():
        rows = sum(item.n for item in items)
        value = sum(item.psi * item.n for item in items) / rows
        largest = max(items, key=lambda item: item.n)
        merged.append(
            FeatureDrift(
                feature=name,
                kind=largest.kind,
                psi=float(value),
                drifted=value > threshold,
                n=rows,
                labels=list(largest.labels),
                reference_shares=list(largest.reference_shares),
                current_shares=list(largest.current_shares),
            )
        )
    return DriftResult(
        features=_worst_first(merged),
        threshold=threshold,
        n_rows=sum(part.n_rows for part in live),
    )


def _worst_first(items: list[FeatureDrift]) -> list[FeatureDrift]:
    return sorted(items, key=lambda item: (-item.psi, item.feature))

