"""The reference's own variability: chunk to chunk, a stable feature barely moves, so a shifted
window stands out against mean + 3 standard deviations."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from modelloop.errors import DataError
from modelloop.stats import adaptive_threshold, build_profile, count_frame, measure, reference_variability


def hourly(days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * 24 * 10  # ten rows an hour
    return pd.DataFrame({
        "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, days * 86400, n)), unit="s"),
        "x": rng.normal(50, 10, n),
        "c": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]),
    })


def test_a_stable_reference_varies_little_and_a_shifted_window_stands_out() -> None:
    frame = hourly(70, 0)
    profile = build_profile(frame, ["x"], ["c"])
    found = reference_variability(profile, frame, timestamp="t", chunk=timedelta(days=7))
    assert found["chunking"] == "time" and found["chunk_seconds"] == 7 * 86400
    assert found["n_chunks"] == 10
    for name in ("x", "c"):
        spread = found["features"][name]["psi"]
        assert 0 < spread["mean"] < 0.01 and spread["std"] < 0.01
    assert set(found["features"]["x"]) == {"psi", "jensen_shannon", "wasserstein"}
    assert set(found["features"]["c"]) == {"psi", "jensen_shannon"}
    # A week with x shifted by a fifth of its spread: small, yet far outside the reference noise.
    week = hourly(7, 1)
    week["x"] += 2.0
    counts = count_frame(profile, week)["x"]
    measured = measure(profile["features"]["x"], profile["features"]["x"]["shares"], counts)
    for method in ("psi", "jensen_shannon", "wasserstein"):
        limit = adaptive_threshold(found["features"]["x"], method, k=3.0)
        assert limit is not None and measured[method] is not None
        assert measured[method] > limit, method
    # An ordinary week does not.
    ordinary = count_frame(profile, hourly(7, 2))["x"]
    same = measure(profile["features"]["x"], profile["features"]["x"]["shares"], ordinary)
    assert same["psi"] is not None
    assert same["psi"] < (adaptive_threshold(found["features"]["x"], "psi") or 0.0)


def test_rows_per_chunk_give_the_cadence() -> None:
    frame = hourly(70, 3)
    found = reference_variability(build_profile(frame, ["x"], []), frame, timestamp="t",
                                  chunk=timedelta(days=7))
    rows = found["rows"]
    assert rows["chunk_seconds"] == 7 * 86400
    assert rows["mean"] == pytest.approx(7 * 240, rel=0.05)
    assert 0 < rows["std"] < 0.05 * rows["mean"]


def test_a_short_span_falls_back_to_equal_count_chunks() -> None:
    frame = hourly(10, 4)
    profile = build_profile(frame, ["x"], ["c"])
    found = reference_variability(profile, frame, timestamp="t", chunk=timedelta(days=7), n_chunks=8)
    assert found["chunking"] == "count" and found["chunk_seconds"] is None
    assert found["n_chunks"] == 8
    assert found["rows"]["mean"] == pytest.approx(len(frame) / 8)
    assert found["rows"]["std"] is None  # equal counts say nothing about volume
    assert found["rows"]["chunk_seconds"] == pytest.approx(10 * 86400 / 8, rel=0.01)
    assert found["features"]["x"]["psi"]["std"] > 0


def test_the_result_is_json_ready() -> None:
    frame = hourly(40, 5)
    frame.loc[::7, "x"] = np.nan
    frame.loc[::11, "c"] = None
    frame.loc[5, "t"] = pd.NaT  # left out of every chunk
    found = reference_variability(build_profile(frame, ["x"], ["c"]), frame, timestamp="t",
                                  chunk=timedelta(days=3))
    assert json.loads(json.dumps(found, allow_nan=False)) == found


def test_absent_entries_give_no_adaptive_threshold() -> None:
    assert adaptive_threshold(None, "psi") is None
    assert adaptive_threshold({"psi": {"mean": 0.01, "std": None}}, "psi") is None
    assert adaptive_threshold({"psi": {"mean": 0.01, "std": 0.002}}, "wasserstein") is None
    assert adaptive_threshold({"psi": {"mean": 0.01, "std": 0.002}}, "psi", k=2) == pytest.approx(0.014)


def test_a_missing_timestamp_column_is_named() -> None:
    frame = hourly(2, 6)
    with pytest.raises(DataError, match="'when' is not a column"):
        reference_variability(build_profile(frame, ["x"], []), frame, timestamp="when",
                              chunk=timedelta(days=1))
