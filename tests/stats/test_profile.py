"""The reference profile: bins that keep point masses, and a JSON round trip changing nothing."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.errors import DataError
from modelloop.stats import bin_shares, build_profile, psi


def precip_like(n: int, zero_share: float, seed: int) -> np.ndarray:
    """Hourly precipitation as in NYC flights 2013: mostly exactly 0, then a long tail."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.exponential(0.05, n), 2) + 0.01
    values[rng.random(n) < zero_share] = 0.0
    return values


def assert_json_types(value: Any, path: str = "profile") -> None:
    """Only the types json.loads gives back: numpy scalars would break the MLflow artifact."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, path
            assert_json_types(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_json_types(item, f"{path}[{i}]")
    else:
        assert type(value) in (str, int, float, bool, type(None)), f"{path}: {type(value)}"


def test_point_mass_gets_its_own_bin_and_reveals_a_shift_plain_deciles_hide() -> None:
    reference = pd.Series(precip_like(5000, 0.93, seed=1))
    wetter = pd.Series(precip_like(5000, 0.80, seed=2))
    profile = build_profile(pd.DataFrame({"precip": reference}), ["precip"], [])
    feature = profile["features"]["precip"]

    assert feature["point_masses"] == [0.0]
    zero_bin = feature["labels"].index("= 0")
    assert feature["shares"][zero_bin] == pytest.approx(0.93, abs=0.01)
    # The wet tail is still cut into several intervals rather than one leftover bin.
    assert len(feature["edges"]) >= 5
    assert psi(np.asarray(feature["shares"]), bin_shares(feature, wetter)) > 0.1

    # Plain deciles of the same data collapse onto 0, so a naive profile sees no drift at all.
    deciles = np.quantile(reference, np.linspace(0, 1, 11))
    assert np.all(deciles[:-1] == 0.0)
    naive_ref, _ = np.histogram(reference, bins=deciles)
    naive_cur, _ = np.histogram(wetter.clip(upper=deciles[-1]), bins=deciles)
    naive = psi(naive_ref / naive_ref.sum(), naive_cur / naive_cur.sum())
    assert naive < 0.01


def test_small_integer_feature_bins_on_its_values() -> None:
    rng = np.random.default_rng(3)
    hours = np.arange(5, 24)
    weights = np.r_[np.full(5, 0.02), np.full(14, 0.9 / 14)]
    frame = pd.DataFrame({"hour": rng.choice(hours, 4000, p=weights)})
    feature = build_profile(frame, ["hour"], [])["features"]["hour"]

    busy = [f"= {h}" for h in range(10, 24)]
    assert [label for label in feature["labels"] if label.startswith("=")] == busy
    # The quiet early hours share a few intervals cut halfway between whole hours, so no
    # observed value sits on an edge (where a last-bit difference would move it), none empty.
    assert all((float(edge) - 0.5).is_integer() for edge in feature["edges"])
    assert len(feature["labels"]) <= len(busy) + 10 + 1
    assert all(share > 0 for share in feature["shares"][:-1])
    assert feature["labels"][-1] == "missing"
    assert sum(feature["shares"]) == pytest.approx(1.0)


def test_values_outside_the_reference_range_land_in_the_open_end_bins() -> None:
    frame = pd.DataFrame({"x": np.linspace(0.0, 10.0, 1000)})
    feature = build_profile(frame, ["x"], [], max_bins=4)["features"]["x"]

    shares = bin_shares(feature, pd.Series([-100.0, 1e9, np.nan, None]))

    assert feature["labels"][0].startswith("<=")
    assert feature["labels"][-2].startswith(">")
    assert shares[0] == 0.25
    assert shares[-2] == 0.25
    assert shares[-1] == 0.5


def test_missing_and_unseen_categories_have_their_own_bins() -> None:
    frame = pd.DataFrame({"carrier": ["UA"] * 50 + ["DL"] * 30 + ["AA"] * 15 + [None] * 5})
    feature = build_profile(frame, [], ["carrier"], max_categories=2)["features"]["carrier"]

    assert feature["labels"] == ["UA", "DL", "__other__", "missing"]
    assert feature["shares"] == pytest.approx([0.5, 0.3, 0.15, 0.05])
    assert feature["categories"] == ["UA", "DL", "AA"]
    assert feature["missing_share"] == pytest.approx(0.05)
    shares = bin_shares(feature, pd.Series(["UA", "XX", "YY", np.nan]))
    assert shares.tolist() == [0.25, 0.0, 0.5, 0.25]


def test_categories_are_compared_as_strings() -> None:
    feature = build_profile(pd.DataFrame({"origin": [1, 2, 2]}), [], ["origin"])["features"][
        "origin"
    ]
    shares = bin_shares(feature, pd.Series(["2", "1", "1", "1"]))
    assert feature["labels"][:2] == ["2", "1"]
    assert shares.tolist() == [0.25, 0.75, 0.0, 0.0]


def test_profile_survives_a_json_round_trip() -> None:
    rng = np.random.default_rng(4)
    n = 500
    frame = pd.DataFrame(
        {
            "precip": precip_like(n, 0.9, seed=5),
            "temp": np.where(rng.random(n) < 0.1, np.nan, rng.normal(55, 17, n)),
            "hour": rng.integers(5, 24, n),
            "flag": pd.array(rng.integers(0, 2, n), dtype="Int64"),
            "empty": np.full(n, np.nan),
            "constant": np.full(n, 3.0),
            "carrier": rng.choice(np.array(["UA", "DL", None], dtype=object), n),
        }
    )
    profile = build_profile(
        frame, ["precip", "temp", "hour", "flag", "empty", "constant"], ["carrier"]
    )

    text = json.dumps(profile, allow_nan=False)
    reloaded = json.loads(text)

    assert reloaded == profile
    assert_json_types(profile)
    assert profile["version"] == 1
    assert profile["n_rows"] == n
    assert profile["features"]["empty"]["mean"] is None
    assert profile["features"]["empty"]["missing_share"] == 1.0
    assert profile["features"]["constant"]["labels"] == ["= 3", "other values", "missing"]
    current = frame.sample(200, random_state=1)
    for name in profile["features"]:
        before = bin_shares(profile["features"][name], current[name])
        after = bin_shares(reloaded["features"][name], current[name])
        np.testing.assert_array_equal(before, after)
        assert sum(profile["features"][name]["shares"]) == pytest.approx(1.0)


def test_empty_values_give_zero_shares() -> None:
    profile = build_profile(
        pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}), ["x"], ["c"]
    )
    for feature in profile["features"].values():
        shares = bin_shares(feature, pd.Series([], dtype=float))
        assert shares.tolist() == [0.0] * len(feature["shares"])


def test_psi_is_zero_for_identical_shares_and_finite_for_empty_bins() -> None:
    same = np.array([0.5, 0.5, 0.0])
    assert psi(same, same) == 0.0
    moved = psi(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert isinstance(moved, float)
    assert 5 < moved < 100


def test_profiling_a_column_the_data_lacks_names_it() -> None:
    with pytest.raises(DataError, match="dep_delay"):
        build_profile(pd.DataFrame({"x": [1.0]}), ["x", "dep_delay"], [])


def test_profiling_does_not_touch_the_callers_frame() -> None:
    frame = pd.DataFrame({"x": [1.0, np.inf, 3.0]})
    build_profile(frame, ["x"], [])
    assert np.isinf(frame["x"].iloc[1])
