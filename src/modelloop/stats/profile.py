"""Reference profile of the training data: the baseline every later drift check compares with.

The profile is plain JSON because it is logged as an MLflow artifact next to the model and read
back months later, when the training frame is long gone. Numeric bins keep point masses (a value
such as `precip == 0` that holds most rows gets a bin of its own): quantile bins alone would fold
it into one interval and hide exactly the shift that matters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from modelloop.errors import DataError

if TYPE_CHECKING:
    import pandas as pd  # only in annotations: pandas is imported by whoever hands a frame

PROFILE_VERSION = 1
#: Categories kept for unseen-category detection; beyond this a feature is treated as free text.
MAX_STORED_CATEGORIES = 1000
OTHER_LABEL = "__other__"
MISSING_LABEL = "missing"


def build_profile(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    max_bins: int = 10,
    point_mass_share: float = 0.05,
    max_categories: int = 50,
) -> dict[str, Any]:
    """Profile the features of `frame` into JSON-ready bins and summary statistics.

    Args:
        frame: The training data.
        numeric: Columns binned by value (point masses, then quantile intervals).
        categorical: Columns binned by category, compared as strings.
        max_bins: Most quantile intervals for the continuous part of a numeric feature.
        point_mass_share: Share of the non-missing values a single value needs to get its own bin.
        max_categories: Categories kept as bins; the rest share the `__other__` bin.

    Returns:
        `{"version": 1, "n_rows": ..., "features": {name: feature_profile}}`.
    """
    if max_bins < 1:
        raise ValueError(f"max_bins must be at least 1, got {max_bins}")
    if not 0 < point_mass_share <= 1:
        raise ValueError(f"point_mass_share must be in (0, 1], got {point_mass_share}")
    if max_categories < 1:
        raise ValueError(f"max_categories must be at least 1, got {max_categories}")
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"{both} listed as both numeric and categorical")
    absent = [name for name in [*numeric, *categorical] if name not in frame.columns]
    if absent:
        raise DataError(
            f"cannot profile {absent}: not columns of the training data "
            f"(it has {sorted(map(str, frame.columns))})"
        )

    features: dict[str, Any] = {}
    for name in numeric:
        features[name] = _numeric_profile(frame[name], max_bins, point_mass_share)
    for name in categorical:
        features[name] = _categorical_profile(frame[name], max_categories)
    return {"version": PROFILE_VERSION, "n_rows": len(frame), "features": features}


def bin_shares(feature: Mapping[str, Any], values: pd.Series) -> np.ndarray:
    """Share of `values` in each bin of `feature`, in the order of `feature["shares"]`.

    Works on a profile reloaded from JSON. Values the reference never saw still land in a bin:
    numbers in the open-ended first or last interval, categories in `__other__`.
    """
    return shares(bin_counts(feature, values))


def bin_counts(feature: Mapping[str, Any], values: pd.Series) -> np.ndarray:
    """How many of `values` fall in each bin of `feature` (as floats), missing values last."""
    kind = feature.get("kind")
    if kind == "numeric":
        return _numeric_counts(feature, values)
    if kind == "categorical":
        return _categorical_counts(feature, values)
    raise ValueError(f"unknown feature kind {kind!r}: expected 'numeric' or 'categorical'")


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts per bin as shares of their total; all zeros when there is nothing counted."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total == 0:
        return np.zeros(counts.size, dtype=float)
    return np.asarray(counts / total, dtype=float)


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index of `actual` against `expected` (both bin shares).

    Shares are clipped to `eps` before the log so an empty bin costs a large but finite amount.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    exp = np.asarray(expected, dtype=float)
    act = np.asarray(actual, dtype=float)
    if exp.shape != act.shape:
        raise ValueError(f"psi needs shares over the same bins, got {exp.shape} and {act.shape}")
    exp = np.clip(exp, eps, None)
    act = np.clip(act, eps, None)
    exp = exp / exp.sum()
    act = act / act.sum()
    return float(np.sum((act - exp) * np.log(act / exp)))


def as_numeric(values: pd.Series) -> np.ndarray:
    """Floats with NaN for anything missing, non-numeric or infinite: all of it is "missing"."""
    import pandas as pd

    raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    # np.where copies, so the caller's frame is never written through a view.
    return np.where(np.isfinite(raw), raw, np.nan)


def as_categories(values: pd.Series) -> pd.Series:
    """The non-missing values as strings, so `1` and `"1"` are the same category."""
    return values[~values.isna()].astype(str)


def _numeric_profile(values: pd.Series, max_bins: int, point_mass_share: float) -> dict[str, Any]:
    arr = as_numeric(values)
    present = arr[~np.isnan(arr)]
    n = int(present.size)
    distinct, counts = np.unique(present, return_counts=True)
    masses = distinct[counts / max(n, 1) >= point_mass_share]
    rest = present[~np.isin(present, masses)]
    edges = np.empty(0, dtype=float)
    if rest.size:
        levels = np.linspace(0.0, 1.0, max_bins + 1)[1:-1]
        # inverted_cdf returns observed values, so integer features get integer cut points.
        edges = np.unique(np.quantile(rest, levels, method="inverted_cdf"))
        edges = edges[edges < rest.max()]
        # Cut halfway to the next observed value, never on one: a value that went through JSON
        # or CSV may differ in its last bit and must not jump to the neighbouring bin.
        above = np.unique(rest)
        following = above[np.minimum(np.searchsorted(above, edges, side="right"), above.size - 1)]
        edges = (edges + following) / 2.0
    feature: dict[str, Any] = {
        "kind": "numeric",
        "n": n,
        "missing_share": _share(arr.size - n, arr.size),
        "min": _json_float(present.min()) if n else None,
        "max": _json_float(present.max()) if n else None,
        "mean": _json_float(present.mean()) if n else None,
        "std": _json_float(present.std(ddof=1)) if n > 1 else None,
        "point_masses": [float(v) for v in masses],
        "edges": [float(v) for v in edges],
        "labels": [
            *(f"= {text}" for text in _cut_texts(masses)),
            *_interval_labels(edges),
            MISSING_LABEL,
        ],
    }
    feature["shares"] = [float(v) for v in bin_shares(feature, values)]
    return feature


def _categorical_profile(values: pd.Series, max_categories: int) -> dict[str, Any]:
    present = as_categories(values)
    counts = present.value_counts()
    # Ties are broken by name so the same data always gives the same profile.
    ordered = sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    top = [name for name, _ in ordered[:max_categories]]
    feature: dict[str, Any] = {
        "kind": "categorical",
        "n": int(present.size),
        "missing_share": _share(len(values) - present.size, len(values)),
        "n_categories": len(ordered),
        "categories": [name for name, _ in ordered[:MAX_STORED_CATEGORIES]],
        "labels": [*top, OTHER_LABEL, MISSING_LABEL],
    }
    feature["shares"] = [float(v) for v in bin_shares(feature, values)]
    return feature


def _numeric_counts(feature: Mapping[str, Any], values: pd.Series) -> np.ndarray:
    masses = np.asarray(feature["point_masses"], dtype=float)
    edges = np.asarray(feature["edges"], dtype=float)
    n_bins = masses.size + edges.size + 2
    check_bins(feature, n_bins)
    arr = as_numeric(values)
    index = np.full(arr.size, n_bins - 1, dtype=np.intp)
    present = ~np.isnan(arr)
    is_mass = np.zeros(arr.size, dtype=bool)
    if masses.size:
        # Near-equality, not ==: a value that went through JSON or CSV (e.g. 11.5078 mph printed
        # with 10 digits) must still land in its point mass.
        pos = np.searchsorted(masses, arr)
        hi = np.minimum(pos, masses.size - 1)
        lo = np.maximum(pos - 1, 0)
        near_hi = np.isclose(masses[hi], arr, rtol=1e-7, atol=1e-12)
        near_lo = np.isclose(masses[lo], arr, rtol=1e-7, atol=1e-12)
        is_mass = present & (near_hi | near_lo)
        index[is_mass] = np.where(near_hi, hi, lo)[is_mass]
    rest = present & ~is_mass
    # Intervals are right-closed: (e[i-1], e[i]]; side="left" puts a value equal to e[i] in bin i.
    index[rest] = masses.size + np.searchsorted(edges, arr[rest], side="left")
    return np.bincount(index, minlength=n_bins).astype(float)


def _categorical_counts(feature: Mapping[str, Any], values: pd.Series) -> np.ndarray:
    top = list(feature["labels"])[:-2]
    check_bins(feature, len(top) + 2)
    present = as_categories(values)
    seen = present.value_counts()
    top_counts = [int(seen.get(name, 0)) for name in top]
    other = int(present.size) - sum(top_counts)
    missing = len(values) - int(present.size)
    return np.asarray([*top_counts, other, missing], dtype=float)


def check_bins(feature: Mapping[str, Any], n_bins: int) -> None:
    """Refuse a profile whose stored shares do not match its own bins (hand-edited or damaged)."""
    shares = feature.get("shares")
    if shares is not None and len(shares) != n_bins:
        raise ValueError(
            f"malformed feature profile: {len(shares)} shares for {n_bins} bins; "
            "rebuild the profile with build_profile"
        )


def _interval_labels(edges: np.ndarray) -> list[str]:
    if edges.size == 0:
        return ["other values"]
    cuts = _cut_texts(edges)
    middle = [f"({lo}, {hi}]" for lo, hi in pairwise(cuts)]
    return [f"<= {cuts[0]}", *middle, f"> {cuts[-1]}"]


def _cut_texts(values: np.ndarray) -> list[str]:
    """Short numbers for labels, unless rounding would make two of them read the same."""
    texts = [f"{float(v):.4g}" for v in values]
    if len(set(texts)) < len(texts):
        texts = [repr(float(v)) for v in values]
    return texts


def _share(count: int, total: int) -> float:
    return float(count / total) if total else 0.0


def _json_float(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
