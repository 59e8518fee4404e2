"""Feature drift and data quality of served data, measured against the model's reference profile.

Both are findings to flag, never errors: drift feeds the retraining trigger and the report, and
data quality runs on training data too, where a surprising value deserves a look, not a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelloop.monitoring.profile import as_categories, as_numeric, bin_shares, psi

#: Unseen categories listed by name per feature; the count covers all of them.
MAX_UNSEEN_LISTED = 10


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
    n_rows = len(frame)
    results: list[FeatureDrift] = []
    for name, feature in profile.get("features", {}).items():
        if name not in frame.columns:
            continue
        reference = np.asarray(feature["shares"], dtype=float)
        current = bin_shares(feature, frame[name])
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


def data_quality(profile: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    """Values outside the reference range, categories never seen in training, missing shares.

    Returns:
        `{"n_rows", "out_of_range", "unseen_categories", "missing"}`; a feature appears under
        `out_of_range` or `unseen_categories` only when it has at least one such value.
    """
    n_rows = len(frame)
    out_of_range: dict[str, Any] = {}
    unseen: dict[str, Any] = {}
    missing: dict[str, float] = {}
    for name, feature in profile.get("features", {}).items():
        if name not in frame.columns:
            continue
        values = frame[name]
        if feature.get("kind") == "numeric":
            numbers = as_numeric(values)
            missing[name] = _share(int(np.isnan(numbers).sum()), n_rows)
            finding = _out_of_range(feature, numbers, n_rows)
            if finding:
                out_of_range[name] = finding
        else:
            present = as_categories(values)
            missing[name] = _share(n_rows - int(present.size), n_rows)
            finding = _unseen(feature, present, n_rows)
            if finding:
                unseen[name] = finding
    return {
        "n_rows": n_rows,
        "out_of_range": out_of_range,
        "unseen_categories": unseen,
        "missing": missing,
    }


def _out_of_range(
    feature: Mapping[str, Any], numbers: np.ndarray, n_rows: int
) -> dict[str, Any] | None:
    low, high = feature.get("min"), feature.get("max")
    present = numbers[~np.isnan(numbers)]
    if low is None or high is None or present.size == 0:
        return None
    count = int(((present < low) | (present > high)).sum())
    if count == 0:
        return None
    return {
        "count": count,
        "share": _share(count, n_rows),
        "min_seen": float(present.min()),
        "max_seen": float(present.max()),
        "reference_min": float(low),
        "reference_max": float(high),
    }


def _unseen(feature: Mapping[str, Any], present: pd.Series, n_rows: int) -> dict[str, Any] | None:
    known = [str(name) for name in feature.get("categories", [])]
    # With more categories than the profile stores, "not stored" does not mean "never seen".
    if int(feature.get("n_categories", len(known))) > len(known):
        return None
    new = present[~present.isin(known)]
    if new.empty:
        return None
    counts = new.value_counts()
    ordered = sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    return {
        "count": int(new.size),
        "share": _share(int(new.size), n_rows),
        "values": [name for name, _ in ordered[:MAX_UNSEEN_LISTED]],
    }


def _worst_first(items: list[FeatureDrift]) -> list[FeatureDrift]:
    return sorted(items, key=lambda item: (-item.psi, item.feature))


def _share(count: int, total: int) -> float:
    return float(count / total) if total else 0.0
