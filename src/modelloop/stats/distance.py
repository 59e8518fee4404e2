"""Drift measures besides PSI, between a feature's reference shares and a window's, over the same
bins of one feature profile (missing bin last): Jensen-Shannon distance, a Wasserstein distance
in reference standard deviations (numeric features), and Pearson's chi-square test (categorical).

Everything works from the bins alone, so it runs on what monitoring already counts in SQL
(`modelloop.stats.counts.FeatureCounts`) and needs numpy and the standard library only: the
chi-square p-value is computed here rather than imported from scipy, for monitoring's start-up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modelloop.stats.counts import FeatureCounts
from modelloop.stats.profile import psi

Kind = Literal["numeric", "categorical"]
MethodName = Literal["psi", "jensen_shannon", "wasserstein", "chi2"]


@dataclass(frozen=True)
class Method:
    """A drift measure, the feature kinds it applies to, and which side of its threshold drifts."""

    name: MethodName
    kinds: frozenset[Kind]
    #: True for a p-value (drift is a value below the threshold); else drift is a value above it.
    drift_below: bool = False


_BOTH: frozenset[Kind] = frozenset({"numeric", "categorical"})
METHODS: dict[str, Method] = {
    "psi": Method("psi", _BOTH),
    "jensen_shannon": Method("jensen_shannon", _BOTH),
    "wasserstein": Method("wasserstein", frozenset({"numeric"})),
    # An unordered category has no distance to move; a test of counts suits it instead.
    "chi2": Method("chi2", frozenset({"categorical"}), drift_below=True),
}
#: Thresholds when the project sets none; PSI's is the project's `monitoring.drift_threshold`.
DEFAULT_THRESHOLDS: dict[str, float] = {"jensen_shannon": 0.1, "wasserstein": 0.1, "chi2": 0.05}


def method(name: str, kind: str | None = None) -> Method:
    """The method called `name`, checked to apply to features of `kind` when one is given.

    Raises:
        ValueError: an unknown method, or one that does not apply to `kind`.
    """
    found = METHODS.get(name)
    if found is None:
        raise ValueError(
            f"unknown drift method {name!r}: expected one of {', '.join(sorted(METHODS))}"
        )
    if kind is not None and kind not in found.kinds:
        raise ValueError(
            f"drift method {name!r} does not apply to {kind} features: it applies to "
            f"{' and '.join(sorted(found.kinds))} features only"
        )
    return found


def is_drift(name: str, value: float, threshold: float) -> bool:
    """Whether `value` of method `name` is drift: a p-value below `threshold` (chi2), any other
    measure above it."""
    if method(name).drift_below:
        return value < threshold
    return value > threshold


def measure(
    feature: Mapping[str, Any],
    reference_shares: Sequence[float] | np.ndarray,
    current: FeatureCounts | Sequence[float] | np.ndarray,
    *,
    current_low: float | None = None,
    current_high: float | None = None,
) -> dict[str, float | None]:
    """Every measure that applies to `feature`'s kind, of the current window against the reference.

    `current` is the window's counts (a `FeatureCounts`, whose low and high values also bound the
    Wasserstein geometry unless given, or whole numbers per bin) or its shares (any non-whole
    entry); chi2 needs counts and is None on shares. Every value is None on an empty window.

    Returns:
        psi and jensen_shannon; wasserstein for a numeric feature; chi2 (the p-value) and
        chi2_statistic for a categorical one.
    """
    kind = feature.get("kind")
    if kind not in _BOTH:
        raise ValueError(f"unknown feature kind {kind!r}: expected 'numeric' or 'categorical'")
    if isinstance(current, FeatureCounts):
        current_low = current.low if current_low is None else current_low
        current_high = current.high if current_high is None else current_high
        values = np.asarray(current.bins, dtype=float)
    else:
        values = np.asarray(current, dtype=float)
    reference = _vector(reference_shares, "reference shares")
    if values.shape != reference.shape:
        raise ValueError(
            f"measures need the same bins on both sides, got {reference.size} reference shares "
            f"and {values.size} current values"
        )
    is_counts = bool(np.all(values == np.round(values)))
    names = [name for name, spec in METHODS.items() if kind in spec.kinds]
    found: dict[str, float | None] = dict.fromkeys(names)
    if kind == "categorical":
        found["chi2_statistic"] = None
    if not np.isfinite(values).all() or values.sum() <= 0:
        return found
    current_shares = values / values.sum()
    found["psi"] = psi(reference, current_shares)
    found["jensen_shannon"] = jensen_shannon(reference, current_shares)
    if kind == "numeric":
        found["wasserstein"] = wasserstein_normed(
            feature, reference, current_shares, current_low=current_low, current_high=current_high
        )
    elif is_counts:
        statistic, p_value = chi_square(reference, values)
        found["chi2"], found["chi2_statistic"] = p_value, statistic
    return found


def jensen_shannon(
    reference_shares: Sequence[float] | np.ndarray, current_shares: Sequence[float] | np.ndarray
) -> float:
    """Jensen-Shannon distance in base 2 (the square root of the divergence): 0 for the same
    shares, 1 for shares with no bin in common. Each side is normalised to sum to one."""
    p = _distribution(reference_shares, "reference shares")
    q = _distribution(current_shares, "current shares")
    if p.shape != q.shape:
        raise ValueError(f"jensen_shannon needs shares over the same bins, got {p.size} and {q.size}")
    m = (p + q) / 2.0
    divergence = (_kl(p, m) + _kl(q, m)) / (2.0 * math.log(2.0))
    return math.sqrt(min(max(divergence, 0.0), 1.0))  # rounding may step just outside [0, 1]


def wasserstein_normed(
    feature: Mapping[str, Any],
    reference_shares: Sequence[float] | np.ndarray,
    current_shares: Sequence[float] | np.ndarray,
    *,
    current_low: float | None = None,
    current_high: float | None = None,
) -> float | None:
    """1-Wasserstein distance between the binned reference and current values, in reference
    standard deviations, so one threshold fits every feature whatever its unit.

    The missing bin is left out and the present bins renormalised. A point mass sits at its value;
    an interval spreads its share evenly over its span. The open first and last intervals end
    where the binned reference keeps the profile's mean and standard deviation (`_tail_ends`):
    spread evenly to the reference minimum and maximum instead, the tails of a normal feature
    would sit twice as far out as they are and the distance come out a third too large. On the
    current side they stop at `current_low` and `current_high` when those lie closer in; they
    never reach out to them, as a single outlier would then move a whole tail's share. The
    distance is exact for these piecewise-linear distribution functions; binned, it runs below
    the distance between the raw values: by a few percent for a shifted normal feature, about
    15% for a skewed one, more for a change of spread (which bins see only in the tails' shares).

    Returns:
        None for a feature without a positive standard deviation or a side without present values.
    """
    if feature.get("kind") != "numeric":
        raise ValueError(f"drift method 'wasserstein' does not apply to {feature.get('kind')} features")
    std, low, high = feature.get("std"), feature.get("min"), feature.get("max")
    if std is None or not std > 0 or low is None or high is None:
        return None
    masses = np.asarray(feature["point_masses"], dtype=float)
    edges = np.asarray(feature["edges"], dtype=float)
    ref = _vector(reference_shares, "reference shares")[:-1]
    cur = _vector(current_shares, "current shares")[:-1]
    n_present = masses.size + edges.size + 1
    if ref.size != n_present or cur.size != n_present:
        raise ValueError(
            f"wasserstein: the profile has {n_present + 1} bins, got {ref.size + 1} reference "
            f"and {cur.size + 1} current shares"
        )
    if ref.sum() <= 0 or cur.sum() <= 0:
        return None
    start, stop = _tail_ends(feature, masses, edges)
    first_edge, last_edge = (edges[0], edges[-1]) if edges.size else (stop, start)
    cur_start = start if current_low is None else min(max(start, current_low), first_edge)
    cur_stop = stop if current_high is None else max(min(stop, current_high), last_edge)
    ref_cdf = _BinnedCdf(masses, edges, start, stop, ref / ref.sum())
    cur_cdf = _BinnedCdf(masses, edges, cur_start, cur_stop, cur / cur.sum())
    points = np.unique(np.concatenate([ref_cdf.breaks, cur_cdf.breaks]))
    # Between breakpoints both functions are linear: integrate |F - G| over each piece exactly,
    # from the difference just right of its start to the difference just left of its end.
    start = ref_cdf.right(points[:-1]) - cur_cdf.right(points[:-1])
    end = ref_cdf.left(points[1:]) - cur_cdf.left(points[1:])
    width = np.diff(points)
    a, b = np.abs(start), np.abs(end)
    same_sign = start * end >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(a + b > 0, (start**2 + end**2) / (2.0 * (a + b)), 0.0)
    area = np.where(same_sign, (a + b) / 2.0, crossing) * width
    return float(np.sum(area)) / float(std)


def chi_square(
    reference_shares: Sequence[float] | np.ndarray, current_counts: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """Pearson's chi-square statistic of the current counts against the reference shares, and
    its p-value with (bins - 1) degrees of freedom.

    A bin the reference never saw (share 0) would make the statistic infinite on a single row, so
    it is pooled with the reference's rarest bin: rows there count as a surplus in a rare bin,
    which is significant when there are many and not when there is one. With one bin left there
    is nothing to test: (0.0, 1.0).
    """
    expected_shares = _distribution(reference_shares, "reference shares")
    observed = _vector(current_counts, "current counts")
    if observed.shape != expected_shares.shape:
        raise ValueError(
            f"chi_square needs counts over the reference's bins, got {expected_shares.size} "
            f"shares and {observed.size} counts"
        )
    if np.any(observed < 0):
        raise ValueError("chi_square needs counts, got a negative one")
    total = float(observed.sum())
    if total <= 0:
        raise ValueError("chi_square needs at least one counted row")
    seen = expected_shares > 0
    rarest = int(np.argmin(np.where(seen, expected_shares, np.inf)))
    pooled = observed[seen].copy()
    pooled[int(np.count_nonzero(seen[:rarest]))] += observed[~seen].sum()
    expected = expected_shares[seen] * total
    if pooled.size < 2:
        return 0.0, 1.0
    statistic = float(np.sum((pooled - expected) ** 2 / expected))
    return statistic, chi2_sf(statistic, pooled.size - 1)


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X chi-square with `dof` degrees of freedom (scipy's chi2.sf)."""
    if dof < 1:
        raise ValueError(f"a chi-square distribution needs at least 1 degree of freedom, got {dof}")
    if math.isnan(statistic):
        raise ValueError("the chi-square statistic is NaN")
    if statistic <= 0:
        return 1.0
    return _gamma_upper(dof / 2.0, statistic / 2.0)


_GAMMA_EPS = 1e-16
_GAMMA_TINY = 1e-300


def _gamma_upper(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x): by its series below x = a + 1 (where Q is not
    small, so 1 - P keeps its precision) and by its continued fraction above."""
    if math.isinf(x):
        return 0.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    max_terms = 1000 + int(10 * math.sqrt(a))
    if x < a + 1.0:
        term = total = 1.0 / a
        for n in range(1, max_terms):
            term *= x / (a + n)
            total += term
            if abs(term) < abs(total) * _GAMMA_EPS:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    # Lentz's method on Q's continued fraction (Numerical Recipes, gcf).
    b = x + 1.0 - a
    c = 1.0 / _GAMMA_TINY
    d = 1.0 / b
    h = d
    for i in range(1, max_terms):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _GAMMA_TINY if abs(d) < _GAMMA_TINY else d
        c = b + an / c
        c = _GAMMA_TINY if abs(c) < _GAMMA_TINY else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < _GAMMA_EPS:
            break
    return math.exp(log_prefix) * h


def _tail_ends(feature: Mapping[str, Any], masses: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    """Where the open first and last intervals end: the ends L and R that give the profile's own
    binned shares its mean and variance, within the reference minimum and maximum.

    The mean fixes R as a line in L; the variance is then a quadratic in L, whose root in range
    is taken. Without two open tails that hold shares, or without a root in range (a skewed
    feature may ask for more variance than uniform tails can give), the closest in range is
    taken, or, failing even that, the minimum and maximum.
    """
    low, high = float(feature["min"]), float(feature["max"])
    shares = np.asarray(feature.get("shares", []), dtype=float)[:-1]
    mean, std = feature.get("mean"), feature.get("std")
    if edges.size == 0 or shares.size != masses.size + edges.size + 1 or mean is None or std is None:
        return low, high
    shares = shares / shares.sum()
    tails = shares[masses.size:]
    s_left, s_right, a, b = float(tails[0]), float(tails[-1]), float(edges[0]), float(edges[-1])
    if s_left <= 0 or s_right <= 0:
        return low, high
    inner_lo, inner_hi, inner = edges[:-1], edges[1:], tails[1:-1]
    first = float(shares[: masses.size] @ masses + inner @ ((inner_lo + inner_hi) / 2))
    second = float(
        shares[: masses.size] @ masses**2 + inner @ ((inner_lo**2 + inner_lo * inner_hi + inner_hi**2) / 3)
    )
    # mean = first + s_left (L + a) / 2 + s_right (b + R) / 2  gives  R = slope * L + offset.
    slope = -s_left / s_right
    offset = (2 * (float(mean) - first) - s_left * a) / s_right - b
    # Second moment minus its target, as A L^2 + B L + C (A > 0).
    quad_a = (s_left + s_right * slope**2) / 3
    quad_b = (s_left * a + s_right * (b * slope + 2 * slope * offset)) / 3
    quad_c = (second - (float(std) ** 2 + float(mean) ** 2) + s_left * a**2 / 3
              + s_right * (b**2 + b * offset + offset**2) / 3)
    # L in [low, a] and R in [b, high]; R falls as L rises.
    lo = max(low, (high - offset) / slope)
    hi = min(a, (b - offset) / slope)
    if lo > hi:
        return low, high
    candidates = [lo, hi, min(max(-quad_b / (2 * quad_a), lo), hi)]
    discriminant = quad_b**2 - 4 * quad_a * quad_c
    if discriminant >= 0:
        roots = ((-quad_b + sign * math.sqrt(discriminant)) / (2 * quad_a) for sign in (-1, 1))
        candidates += [root for root in roots if lo <= root <= hi]
    left = min(candidates, key=lambda x: abs((quad_a * x + quad_b) * x + quad_c))
    return left, slope * left + offset


class _BinnedCdf:
    """The distribution function of binned values: point masses plus evenly spread intervals."""

    def __init__(
        self, masses: np.ndarray, edges: np.ndarray, low: float, high: float, shares: np.ndarray
    ) -> None:
        lows = np.r_[low, edges]
        highs = np.r_[edges, high]
        # An interval of no width (the reference's min equal to its max) is a point.
        flat = highs <= lows
        interval_shares = shares[masses.size:]
        self._points = np.r_[masses, lows[flat]]
        self._point_shares = np.r_[shares[: masses.size], interval_shares[flat]]
        self._lows, self._highs = lows[~flat], highs[~flat]
        self._spread_shares = interval_shares[~flat]
        self.breaks = np.unique(np.r_[self._points, self._lows, self._highs])

    def _spread(self, x: np.ndarray) -> np.ndarray:
        covered = np.clip((x[:, None] - self._lows) / (self._highs - self._lows), 0.0, 1.0)
        return np.asarray(covered @ self._spread_shares, dtype=float)

    def right(self, x: np.ndarray) -> np.ndarray:
        """F(x): the share at or below x."""
        at_or_below = (self._points <= x[:, None]).astype(float) @ self._point_shares
        return np.asarray(self._spread(x) + at_or_below, dtype=float)

    def left(self, x: np.ndarray) -> np.ndarray:
        """F(x-): the share strictly below x."""
        below = (self._points < x[:, None]).astype(float) @ self._point_shares
        return np.asarray(self._spread(x) + below, dtype=float)


def _vector(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if not np.isfinite(array).all():
        raise ValueError(f"{what} must be finite numbers")
    return array


def _distribution(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = _vector(values, what)
    if np.any(array < 0) or array.sum() <= 0:
        raise ValueError(f"{what} must be non-negative with a positive total")
    return np.asarray(array / array.sum(), dtype=float)


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    """Kullback-Leibler divergence in nats; a bin empty in `p` adds nothing (m > 0 wherever p is)."""
    used = p > 0
    return float(np.sum(p[used] * np.log(p[used] / m[used])))
