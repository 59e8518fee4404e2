"""A set of rows counted against a reference profile: the sufficient statistics of a window.

Everything monitoring reports about a feature (its shares per reference bin, PSI, missing rate,
values out of the reference range, unseen categories) is a function of these counts. They are
computed where the data lives, in DuckDB over the prediction log (`modelloop.stats.sql`) or from
a pandas frame (`count_frame`), and give the same numbers either way. Counts of disjoint row
sets measured against the same profile add up (`merge_counts`): a window can be counted in
pieces (per file, per day, per segment) and combined without the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from modelloop.stats.profile import as_categories, as_numeric, bin_counts

if TYPE_CHECKING:
    import pandas as pd  # only in annotations: pandas is imported by whoever hands a frame

#: Unseen categories listed by name per feature; the count covers all of them.
MAX_UNSEEN_LISTED = 10


@dataclass(frozen=True)
class FeatureCounts:
    """One feature of a set of rows, counted in the bins of its reference profile."""

    feature: str
    kind: str  # "numeric" or "categorical", as in the profile
    #: Rows per reference bin, in the order of the profile's `shares`; missing values last.
    bins: tuple[int, ...]
    #: Numeric: present values below the reference minimum and above its maximum.
    below: int = 0
    above: int = 0
    #: Numeric: the smallest and largest present value (None when there is none).
    low: float | None = None
    high: float | None = None
    #: Categorical: present values that are not among the reference's categories. Only counted
    #: when the profile stores every category it saw (else "not stored" is not "never seen").
    unseen: int = 0
    #: The most frequent unseen values with their counts, most frequent first (ties by name).
    #: Exact for counts of one piece; after a merge a value outside a piece's list counts 0 there.
    unseen_values: tuple[tuple[str, int], ...] = ()

    @property
    def rows(self) -> int:
        return sum(self.bins)

    @property
    def missing(self) -> int:
        return self.bins[-1] if self.bins else 0

    def shares(self) -> np.ndarray:
        """Share of the rows in each bin; all zeros for no rows."""
        counts = np.asarray(self.bins, dtype=float)
        total = counts.sum()
        if total == 0:
            return np.zeros(counts.size, dtype=float)
        return np.asarray(counts / total, dtype=float)


def count_frame(profile: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, FeatureCounts]:
    """Count every profiled feature present in `frame` (an absent one is left out)."""
    found: dict[str, FeatureCounts] = {}
    for name, feature in profile.get("features", {}).items():
        if name in frame.columns:
            found[str(name)] = count_values(str(name), feature, frame[name])
    return found


def count_values(name: str, feature: Mapping[str, Any], values: pd.Series) -> FeatureCounts:
    """Count one column against its feature profile."""
    bins = tuple(int(v) for v in bin_counts(feature, values))
    kind = str(feature["kind"])
    if kind == "numeric":
        numbers = as_numeric(values)
        present = numbers[~np.isnan(numbers)]
        low_ref, high_ref = feature.get("min"), feature.get("max")
        below = int((present < low_ref).sum()) if low_ref is not None else 0
        above = int((present > high_ref).sum()) if high_ref is not None else 0
        return FeatureCounts(
            name,
            kind,
            bins,
            below=below,
            above=above,
            low=float(present.min()) if present.size else None,
            high=float(present.max()) if present.size else None,
        )
    if not tracks_unseen(feature):
        return FeatureCounts(name, kind, bins)
    present_values = as_categories(values)
    new = present_values[~present_values.isin(known_categories(feature))]
    ordered = sorted(
        ((str(k), int(v)) for k, v in new.value_counts().items()), key=lambda kv: (-kv[1], kv[0])
    )
    return FeatureCounts(
        name, kind, bins, unseen=int(new.size), unseen_values=tuple(ordered[:MAX_UNSEEN_LISTED])
    )


def merge_counts(parts: Iterable[FeatureCounts]) -> FeatureCounts:
    """Counts of disjoint row sets measured against the same feature profile, added up."""
    items = list(parts)
    if not items:
        raise ValueError("merge_counts needs at least one FeatureCounts")
    first = items[0]
    for item in items[1:]:
        if (item.feature, item.kind, len(item.bins)) != (first.feature, first.kind, len(first.bins)):
            raise ValueError(
                f"cannot merge counts of {item.feature!r} ({len(item.bins)} bins) with counts of "
                f"{first.feature!r} ({len(first.bins)} bins): they were measured against different profiles"
            )
    lows = [item.low for item in items if item.low is not None]
    highs = [item.high for item in items if item.high is not None]
    unseen: dict[str, int] = {}
    for item in items:
        for value, count in item.unseen_values:
            unseen[value] = unseen.get(value, 0) + count
    listed = sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_UNSEEN_LISTED]
    return replace(
        first,
        bins=tuple(int(v) for v in np.sum([item.bins for item in items], axis=0)),
        below=sum(item.below for item in items),
        above=sum(item.above for item in items),
        low=min(lows) if lows else None,
        high=max(highs) if highs else None,
        unseen=sum(item.unseen for item in items),
        unseen_values=tuple(listed),
    )


def tracks_unseen(feature: Mapping[str, Any]) -> bool:
    """Whether a categorical profile stores every category it saw, so a category outside it is
    truly unseen (with more categories than stored, "not stored" does not mean "never seen")."""
    known = feature.get("categories", [])
    return int(feature.get("n_categories", len(known))) <= len(known)


def known_categories(feature: Mapping[str, Any]) -> list[str]:
    """The reference's categories as strings, the form values are compared in."""
    return [str(name) for name in feature.get("categories", [])]
