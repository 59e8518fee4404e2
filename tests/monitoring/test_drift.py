"""Drift against the reference profile, merged across model versions."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.monitoring.drift import (
    DriftResult,
    FeatureDrift,
    compute_drift,
    merge_drift,
)
from modelloop.stats import build_profile


def flights(n: int, seed: int, *, temp_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "temp": rng.normal(55.0 + temp_shift, 17.0, n),
            "hour": rng.integers(5, 24, n),
            "carrier": rng.choice(["UA", "B6", "EV", "DL"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


@pytest.fixture
def profile() -> dict[str, Any]:
    return build_profile(flights(4000, seed=1), ["temp", "hour"], ["carrier"])


def feature_drift(name: str, psi: float, n: int, *, drifted: bool = False) -> FeatureDrift:
    return FeatureDrift(
        feature=name,
        kind="numeric",
        psi=psi,
        drifted=drifted,
        n=n,
        labels=["a", "missing"],
        reference_shares=[1.0, 0.0],
        current_shares=[float(n), 0.0],
    )


def test_same_distribution_does_not_drift(profile: dict[str, Any]) -> None:
    result = compute_drift(profile, flights(3000, seed=2), threshold=0.1)

    assert result.drifted == []
    assert result.share_drifted == 0.0
    assert result.n_rows == 3000
    assert {item.feature for item in result.features} == {"temp", "hour", "carrier"}
    assert all(item.psi < 0.05 for item in result.features)


def test_shifted_normal_drifts_and_comes_first(profile: dict[str, Any]) -> None:
    result = compute_drift(profile, flights(3000, seed=3, temp_shift=12.0), threshold=0.1)

    assert result.drifted == ["temp"]
    assert result.features[0].feature == "temp"
    assert result.features[0].psi > 0.2
    assert result.share_drifted == pytest.approx(1 / 3)
    psis = [f.psi for f in result.features]
    assert psis == sorted(psis, reverse=True)
    top = result.features[0]
    assert len(top.labels) == len(top.reference_shares) == len(top.current_shares)
    assert sum(top.current_shares) == pytest.approx(1.0)


def test_feature_absent_from_the_frame_is_skipped(profile: dict[str, Any]) -> None:
    result = compute_drift(profile, flights(500, seed=4).drop(columns=["carrier"]), threshold=0.1)
    assert [item.feature for item in result.features if item.feature == "carrier"] == []
    assert len(result.features) == 2


def test_no_rows_is_no_drift(profile: dict[str, Any]) -> None:
    result = compute_drift(profile, flights(0, seed=5), threshold=0.1)
    assert result.drifted == []
    assert all(item.psi == 0.0 for item in result.features)


def test_to_dict_is_json_ready(profile: dict[str, Any]) -> None:
    result = compute_drift(profile, flights(1000, seed=6, temp_shift=12.0), threshold=0.1)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))

    assert data["drifted"] == ["temp"]
    assert data["share_drifted"] == pytest.approx(1 / 3)
    assert data["threshold"] == 0.1
    assert data["n_rows"] == 1000
    assert data["features"][0]["feature"] == "temp"
    assert data["features"][0]["drifted"] is True


def test_merge_weights_psi_by_rows_and_shows_the_largest_part() -> None:
    small = DriftResult([feature_drift("temp", 0.3, 100, drifted=True)], threshold=0.1, n_rows=100)
    large = DriftResult([feature_drift("temp", 0.02, 300)], threshold=0.1, n_rows=300)
    empty = DriftResult([feature_drift("temp", 5.0, 0, drifted=True)], threshold=0.1, n_rows=0)

    merged = merge_drift([small, empty, large], threshold=0.1)

    (temp,) = merged.features
    assert temp.psi == pytest.approx((0.3 * 100 + 0.02 * 300) / 400)
    assert temp.n == 400
    assert merged.n_rows == 400
    assert not temp.drifted  # 0.09: the version serving most rows is fine
    assert temp.current_shares == [300.0, 0.0]
    assert merge_drift([small, large], threshold=0.05).drifted == ["temp"]


def test_merge_across_versions_with_different_profiles(profile: dict[str, Any]) -> None:
    other = build_profile(flights(4000, seed=7), ["temp"], ["carrier"], max_bins=5)
    v1 = compute_drift(profile, flights(2000, seed=8, temp_shift=12.0), threshold=0.1)
    v2 = compute_drift(other, flights(500, seed=9), threshold=0.1)

    merged = merge_drift([v1, v2], threshold=0.1)

    by_name = {item.feature: item for item in merged.features}
    assert set(by_name) == {"temp", "hour", "carrier"}
    assert by_name["hour"].n == 2000
    assert by_name["temp"].n == 2500
    assert merged.drifted[0] == "temp"
    assert merge_drift([], threshold=0.1).share_drifted == 0.0


def test_unseen_categories_go_to_other_in_the_drift_bars(profile: dict[str, Any]) -> None:
    frame = pd.DataFrame({"carrier": ["ZZ"] * 90 + ["UA"] * 10})
    result = compute_drift(profile, frame, threshold=0.1)
    (carrier,) = result.features
    assert carrier.current_shares[carrier.labels.index("__other__")] == pytest.approx(0.9)
    assert carrier.drifted
