"""Drift measures besides PSI give scipy's numbers (scipy is the reference here only; the code
under test imports numpy and the standard library)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import spatial, stats

from modelloop.stats import FeatureCounts, build_profile, count_values, psi
from modelloop.stats.distance import (
    DEFAULT_THRESHOLDS,
    METHODS,
    chi2_sf,
    chi_square,
    is_drift,
    jensen_shannon,
    measure,
    method,
    wasserstein_normed,
)


def numeric_feature(values: np.ndarray) -> dict:
    return build_profile(pd.DataFrame({"x": values}), ["x"], [])["features"]["x"]


def test_jensen_shannon_equals_scipy() -> None:
    rng = np.random.default_rng(0)
    for size in (2, 5, 12):
        p, q = rng.dirichlet(np.ones(size)), rng.dirichlet(np.ones(size))
        q[0] = 0.0  # an empty bin on one side
        expected = spatial.distance.jensenshannon(p, q, base=2)
        assert jensen_shannon(p, q) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert jensen_shannon([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert jensen_shannon([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert jensen_shannon([2.0, 2.0], [1.0, 3.0]) == pytest.approx(jensen_shannon([0.5, 0.5], [0.25, 0.75]))


@pytest.mark.parametrize(
    ("reference", "current", "tolerance"),
    [
        (("normal", 0.0, 10.0), ("normal", 8.0, 10.0), 0.15),
        (("normal", 0.0, 10.0), ("normal", 2.0, 10.0), 0.15),
        (("lognormal", 0.0, 1.0), ("lognormal", 0.3, 1.0), 0.2),
    ],
    ids=["shift-8-of-std-10", "shift-2-of-std-10", "skewed"],
)
def test_wasserstein_from_bins_is_close_to_scipy_on_the_raw_values(
    reference: tuple, current: tuple, tolerance: float
) -> None:
    rng = np.random.default_rng(1)
    ref = getattr(rng, reference[0])(reference[1], reference[2], 50_000)
    cur = getattr(rng, current[0])(current[1], current[2], 50_000)
    feature = numeric_feature(ref)
    counts = count_values("x", feature, pd.Series(cur))
    exact = stats.wasserstein_distance(ref, cur) / feature["std"]
    found = wasserstein_normed(feature, feature["shares"], counts.shares(), current_low=counts.low,
                               current_high=counts.high)
    assert found == pytest.approx(exact, rel=tolerance)


def test_wasserstein_of_the_same_data_is_about_zero() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(0, 10, 50_000)
    feature = numeric_feature(ref)
    assert wasserstein_normed(feature, feature["shares"], feature["shares"]) == 0.0
    other = count_values("x", feature, pd.Series(rng.normal(0, 10, 50_000)))
    assert (wasserstein_normed(feature, feature["shares"], other.shares()) or 1.0) < 0.02


def test_wasserstein_of_point_masses_is_the_distance_moved() -> None:
    # Half the rows at 0, half at 10 (std 5.0 with ddof=1 on many rows): moving a quarter of
    # the rows from 0 to 10 moves 0.25 * 10 = 2.5, half a standard deviation.
    ref = np.r_[np.zeros(5000), np.full(5000, 10.0)]
    feature = numeric_feature(ref)
    assert feature["point_masses"] == [0.0, 10.0]
    current = count_values("x", feature, pd.Series(np.r_[np.zeros(2500), np.full(7500, 10.0)]))
    found = wasserstein_normed(feature, feature["shares"], current.shares())
    assert found == pytest.approx(2.5 / feature["std"], rel=1e-9)


def test_wasserstein_ignores_missing_values_and_is_none_without_a_spread() -> None:
    rng = np.random.default_rng(3)
    feature = numeric_feature(rng.normal(0, 1, 1000))
    with_missing = np.r_[np.asarray(feature["shares"][:-1]) * 0.5, 0.5]
    assert wasserstein_normed(feature, feature["shares"], with_missing) == pytest.approx(0.0, abs=1e-12)
    only_missing = np.r_[np.zeros(len(feature["shares"]) - 1), 1.0]
    assert wasserstein_normed(feature, feature["shares"], only_missing) is None
    constant = numeric_feature(np.full(100, 4.0))
    assert wasserstein_normed(constant, constant["shares"], constant["shares"]) is None


def test_chi2_p_values_equal_scipy() -> None:
    for dof in (1, 2, 3, 4, 7, 10, 25, 50, 100, 250, 1000):
        for statistic in (1e-4, 0.05, 0.5, 1.0, 2.5, dof - 0.5, dof, dof + 1.0, 2.0 * dof, 5.0 * dof + 30,
                          100.0, 400.0, 1500.0):
            expected = stats.chi2.sf(statistic, dof)
            if expected > 1e-290:  # below, both are 0 or subnormal
                assert chi2_sf(statistic, dof) == pytest.approx(expected, rel=1e-9), (statistic, dof)
    assert chi2_sf(0.0, 3) == 1.0


def test_chi_square_equals_scipy_when_every_bin_is_expected() -> None:
    shares = np.array([0.5, 0.3, 0.15, 0.05])
    observed = np.array([480, 320, 130, 70])
    found = stats.chisquare(observed, shares * observed.sum())
    assert chi_square(shares, observed) == pytest.approx((found.statistic, found.pvalue), rel=1e-9)


def test_chi_square_pools_bins_the_reference_never_saw_with_its_rarest() -> None:
    shares = np.array([0.6, 0.3, 0.1, 0.0, 0.0])  # no "__other__" and no missing in training
    observed = np.array([60.0, 30.0, 9.0, 0.0, 1.0])
    pooled = stats.chisquare([60.0, 30.0, 10.0], np.array([0.6, 0.3, 0.1]) * 100)
    assert chi_square(shares, observed) == pytest.approx((pooled.statistic, pooled.pvalue), rel=1e-9)
    # One missing value is no evidence; many are.
    assert chi_square(shares, observed)[1] > 0.5
    assert chi_square(shares, np.array([60.0, 30.0, 10.0, 0.0, 50.0]))[1] < 1e-6


def test_measure_gives_what_applies_to_each_kind() -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(["a", "b", "c"], 2000)})
    profile = build_profile(frame, ["x"], ["c"])
    x, c = profile["features"]["x"], profile["features"]["c"]
    shifted = count_values("x", x, pd.Series(rng.normal(1, 1, 500)))
    found = measure(x, x["shares"], shifted)
    assert set(found) == {"psi", "jensen_shannon", "wasserstein"}
    assert found["psi"] == pytest.approx(psi(np.asarray(x["shares"]), shifted.shares()))
    assert found["wasserstein"] == pytest.approx(1.0, rel=0.2)
    counted = count_values("c", c, pd.Series(rng.choice(["a", "b", "c"], 500, p=[0.6, 0.2, 0.2])))
    found = measure(c, c["shares"], counted)
    assert set(found) == {"psi", "jensen_shannon", "chi2", "chi2_statistic"}
    assert found["chi2"] is not None and found["chi2"] < 1e-6
    assert is_drift("chi2", found["chi2"], DEFAULT_THRESHOLDS["chi2"])
    # Shares carry no row count: no chi-square test on them.
    assert measure(c, c["shares"], counted.shares())["chi2"] is None
    # No rows is no measure at all.
    empty = FeatureCounts("c", "categorical", (0,) * len(c["shares"]))
    assert set(measure(c, c["shares"], empty).values()) == {None}


def test_drift_is_above_the_threshold_except_for_a_p_value() -> None:
    assert is_drift("psi", 0.3, 0.2) and not is_drift("psi", 0.1, 0.2)
    assert is_drift("jensen_shannon", 0.2, DEFAULT_THRESHOLDS["jensen_shannon"])
    assert is_drift("chi2", 0.01, 0.05) and not is_drift("chi2", 0.5, 0.05)
    assert set(METHODS) == {"psi", "jensen_shannon", "wasserstein", "chi2"}


def test_unknown_or_inapplicable_methods_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown drift method 'ks'.*chi2, jensen_shannon, psi"):
        is_drift("ks", 0.1, 0.1)
    with pytest.raises(ValueError, match=r"'wasserstein' does not apply to categorical features"):
        method("wasserstein", "categorical")
    with pytest.raises(ValueError, match=r"'chi2' does not apply to numeric features"):
        method("chi2", "numeric")
    assert method("psi", "numeric").name == "psi"
