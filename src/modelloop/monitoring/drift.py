"""Feature drift of served data: how far each feature's distribution moved from its reference.

A finding to flag, never an error: drift feeds the alerts, the retraining trigger and the report.
It is computed from a window's counts per reference bin (`modelloop.stats.counts`), which
monitoring takes in SQL where the log lives; `compute_drift` gives the same result on a pandas
frame. Every feature gets every measure that applies to it (PSI and Jensen-Shannon for all,
normalised Wasserstein for numbers, chi² for categories); one of them, PSI unless the project
file says otherwise, decides, against a threshold that is fixed, the feature's own, or the
reference's own variability (`DriftRules`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from modelloop.stats import FeatureCounts, count_frame
from modelloop.stats.distance import DEFAULT_THRESHOLDS, is_drift, measure
from modelloop.stats.variability import adaptive_threshold
from modelloop.store.logs import PREDICTION

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd  # only in annotations: pandas is imported by whoever hands a frame

    from modelloop.config import MonitoringConfig

#: Each measure as people read it, in messages and tables.
METHOD_NAMES = {"psi": "PSI", "jensen_shannon": "Jensen-Shannon", "wasserstein": "Wasserstein (normed)",
                "chi2": "chi²"}


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
    #: The measure that decides, its value and the threshold it was held to.
    method: str = "psi"
    value: float | None = None
    threshold: float | None = None
    #: Where the threshold came from: fixed (drift_threshold or a method's default), override
    #: (`monitoring.features`) or adaptive (the reference's own variability).
    threshold_source: str = "fixed"
    jensen_shannon: float | None = None
    wasserstein: float | None = None
    #: chi² p-value (categorical): small means the counts are unlikely under the reference.
    chi2: float | None = None
    #: Counted toward the dataset drift that retrains (not `monitoring.seasonal`, not `counted: false`).
    counted: bool = True
    #: What the current window was compared with: training, same_period_last_year or rolling.
    reference: str = "training"


@dataclass(frozen=True)
class DriftResult:
    """Drift of every profiled feature, worst first, so a reader starts with what moved most."""

    features: list[FeatureDrift]
    threshold: float
    n_rows: int
    #: Features `monitoring.features` says to ignore: named, never measured.
    ignored: list[str] = field(default_factory=list)
    #: The model's output against its holdout predictions, when the profile has them.
    prediction: FeatureDrift | None = None

    @property
    def drifted(self) -> list[str]:
        """Names of the features that drifted, worst first."""
        return [item.feature for item in self.features if item.drifted]

    @property
    def counted(self) -> list[FeatureDrift]:
        return [item for item in self.features if item.counted]

    @property
    def share_drifted(self) -> float:
        """Share of the counted features that drifted (0.0 when none were checked)."""
        counted = self.counted
        if not counted:
            return 0.0
        return sum(item.drifted for item in counted) / len(counted)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored with the monitoring result and rendered in the report."""
        return {
            "threshold": float(self.threshold),
            "n_rows": int(self.n_rows),
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "ignored": list(self.ignored),
            "features": [asdict(item) for item in self.features],
            "prediction": asdict(self.prediction) if self.prediction else None,
        }


@dataclass(frozen=True)
class DriftRules:
    """How each feature's drift is judged: the project's `monitoring` section, or PSI above one
    threshold for every feature (`DriftRules(threshold)`)."""

    threshold: float
    monitoring: MonitoringConfig | None = None

    def ignored(self, name: str) -> bool:
        rule = self._rule(name)
        return bool(rule and rule.ignore)

    def counted(self, name: str) -> bool:
        if self.monitoring is None:
            return True
        rule = self._rule(name)
        return name not in self.monitoring.seasonal and (rule is None or rule.counted)

    def reference(self, name: str) -> str:
        if self.monitoring is None:
            return "training"
        rule = self._rule(name)
        return (rule.reference if rule and rule.reference else None) or self.monitoring.reference

    def judge(
        self,
        name: str,
        measures: Mapping[str, float | None],
        *,
        variability: Mapping[str, Any] | None,
        reference: str,
    ) -> tuple[str, float | None, float | None, str, bool]:
        """(method, value, threshold, threshold source, drifted) of one feature."""
        rule = self._rule(name)
        method = (rule.method if rule and rule.method else None) or "psi"
        if method not in measures:  # e.g. a prediction's profile judged by a categorical rule
            method = "psi"
        value = measures.get(method)
        threshold: float | None
        if rule is not None and rule.threshold is not None:
            threshold, source = rule.threshold, "override"
        else:
            threshold, source = (self.threshold if method == "psi" else DEFAULT_THRESHOLDS[method]), "fixed"
            adaptive = (
                self.monitoring is not None
                and self.monitoring.thresholds == "adaptive"
                and reference == "training"
                and variability is not None
            )
            if adaptive and method != "chi2" and variability is not None:
                found = adaptive_threshold(variability, method, k=self.monitoring.adaptive_k)  # type: ignore[union-attr]
                # The band widens a threshold for a feature that varies by nature (weather);
                # it never narrows one below the fixed threshold, where a steady feature's
                # small real changes (a summer schedule) would be statistically odd but too
                # small to act on.
                if found is not None and found > threshold:
                    threshold, source = found, "adaptive"
        drifted = value is not None and threshold is not None and is_drift(method, value, threshold)
        return method, value, threshold, source, drifted

    def _rule(self, name: str) -> Any:
        return None if self.monitoring is None else self.monitoring.features.get(name)


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
    rules: DriftRules | None = None,
    references: Mapping[str, tuple[str, np.ndarray]] | None = None,
) -> DriftResult:
    """`compute_drift` of `n_rows` rows already counted against `profile`.

    Args:
        rules: How each feature is judged (default: PSI above `threshold`).
        references: Per feature, a reference other than the profile's shares, as (what it is,
            its shares in the profile's bins): the same period last year, a rolling window.
    """
    rules = rules or DriftRules(threshold)
    variability = profile.get("variability", {}).get("features", {})
    results: list[FeatureDrift] = []
    ignored: list[str] = []
    for name, feature in profile.get("features", {}).items():
        found = counts.get(name)
        if found is None or name == PREDICTION:  # the output is judged apart, below
            continue
        if rules.ignored(str(name)):
            ignored.append(str(name))
            continue
        results.append(
            _feature_drift(str(name), feature, found, n_rows, rules, variability.get(name),
                           (references or {}).get(str(name)))
        )
    prediction = None
    predicted = counts.get(PREDICTION)
    if "prediction" in profile and predicted is not None:
        prediction = replace(
            _feature_drift("prediction", profile["prediction"], predicted, n_rows, rules,
                           None, None),
            counted=False,
        )
    return DriftResult(
        features=_worst_first(results), threshold=threshold, n_rows=n_rows, ignored=ignored,
        prediction=prediction,
    )


def _feature_drift(
    name: str,
    feature: Mapping[str, Any],
    found: FeatureCounts,
    n_rows: int,
    rules: DriftRules,
    variability: Mapping[str, Any] | None,
    reference: tuple[str, np.ndarray] | None,
) -> FeatureDrift:
    import numpy as np

    if reference is None:
        reference = ("training", np.asarray(feature["shares"], dtype=float))
    kind, shares = reference
    current = found.shares()
    if n_rows and found.rows:
        measures = measure(feature, shares, np.asarray(found.bins, dtype=float),
                           current_low=found.low, current_high=found.high)
    else:
        # No rows means no evidence of drift, not the maximal drift that PSI of zeros would give.
        measures = {"psi": 0.0, "jensen_shannon": 0.0}
    method, value, threshold, source, drifted = rules.judge(
        name, measures, variability=variability, reference=kind
    )
    return FeatureDrift(
        feature=name,
        kind=str(feature["kind"]),
        psi=float(measures.get("psi") or 0.0),
        drifted=bool(drifted),
        n=n_rows,
        labels=[str(label) for label in feature["labels"]],
        reference_shares=[float(v) for v in shares],
        current_shares=[float(v) for v in current],
        method=method,
        value=value,
        threshold=threshold,
        threshold_source=source,
        jensen_shannon=measures.get("jensen_shannon"),
        wasserstein=measures.get("wasserstein"),
        chi2=measures.get("chi2"),
        counted=rules.counted(name),
        reference=kind,
    )


def merge_drift(parts: Sequence[DriftResult], *, threshold: float) -> DriftResult:
    """Combine drift measured on disjoint row groups, such as rows served by different versions.

    Each part was compared with its own version's profile, so bins differ between parts and
    cannot be added up: each measure is averaged weighted by rows and judged again against the
    largest part's threshold; the bars shown are the largest part's.
    """
    live = [part for part in parts if part.n_rows > 0]
    if len(live) == 1:
        return live[0]
    by_feature: dict[str, list[FeatureDrift]] = {}
    for part in live:
        for item in part.features:
            if item.n > 0:
                by_feature.setdefault(item.feature, []).append(item)
    merged = [_merged(items, threshold) for items in by_feature.values()]
    predictions = [part.prediction for part in live if part.prediction is not None and part.prediction.n]
    return DriftResult(
        features=_worst_first(merged),
        threshold=threshold,
        n_rows=sum(part.n_rows for part in live),
        ignored=sorted({name for part in live for name in part.ignored}),
        prediction=_merged(predictions, threshold) if predictions else None,
    )


def _merged(items: Sequence[FeatureDrift], threshold: float) -> FeatureDrift:
    rows = sum(item.n for item in items)
    largest = max(items, key=lambda item: item.n)
    # Judged as the largest part was; a part built without a threshold gets the merge's.
    limit = largest.threshold if largest.threshold is not None else threshold

    def mean(attribute: str) -> float | None:
        values = [(getattr(item, attribute), item.n) for item in items]
        if any(value is None for value, _n in values):
            return None
        return float(sum(value * n for value, n in values) / rows)

    merged = {name: mean(name) for name in ("psi", "jensen_shannon", "wasserstein", "chi2")}
    value = merged.get(largest.method)
    drifted = value is not None and is_drift(largest.method, value, limit)
    return replace(
        largest,
        threshold=limit,
        psi=float(merged["psi"] or 0.0),
        jensen_shannon=merged["jensen_shannon"],
        wasserstein=merged["wasserstein"],
        chi2=merged["chi2"],
        value=value,
        drifted=bool(drifted),
        n=rows,
    )


def _worst_first(items: list[FeatureDrift]) -> list[FeatureDrift]:
    # Drifted first, then by how far past its own threshold (measures differ in scale).
    def key(item: FeatureDrift) -> tuple[bool, float, str]:
        if item.value is None or not item.threshold:
            return (not item.drifted, 0.0, item.feature)
        if item.method == "chi2":  # a p-value: the smaller, the further past
            ratio = item.threshold / max(item.value, 1e-12)
        else:
            ratio = item.value / item.threshold
        return (not item.drifted, -ratio, item.feature)

    return sorted(items, key=key)
