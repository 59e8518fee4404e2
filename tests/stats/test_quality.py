"""Data quality against the reference profile: out of range, unseen categories, missing shares."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.stats import build_profile, count_frame, data_quality, quality_from_counts


def flights(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "temp": rng.normal(55.0, 17.0, n),
            "hour": rng.integers(5, 24, n),
            "carrier": rng.choice(["UA", "B6", "EV", "DL"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


@pytest.fixture
def profile() -> dict[str, Any]:
    return build_profile(flights(4000, seed=1), ["temp", "hour"], ["carrier"])


def test_data_quality_reports_out_of_range_unseen_and_missing(
    profile: dict[str, Any],
) -> None:
    frame = pd.DataFrame(
        {
            "temp": [50.0, 60.0, -80.0, 250.0, 300.0, np.nan],
            "hour": [5, 6, 7, 8, 9, 10],
            "carrier": ["UA", "ZZ", "ZZ", "QQ", None, "DL"],
        }
    )

    report = data_quality(profile, frame)

    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert report["n_rows"] == 6
    temp = report["out_of_range"]["temp"]
    assert temp["count"] == 3
    assert temp["share"] == pytest.approx(0.5)
    assert (temp["min_seen"], temp["max_seen"]) == (-80.0, 300.0)
    assert temp["reference_min"] < 50 < temp["reference_max"] < 250
    assert "hour" not in report["out_of_range"]
    assert report["unseen_categories"] == {
        "carrier": {"count": 3, "share": 0.5, "values": ["ZZ", "QQ"]}
    }
    assert report["missing"] == {
        "temp": pytest.approx(1 / 6),
        "hour": 0.0,
        "carrier": pytest.approx(1 / 6),
    }


def test_clean_data_has_no_findings(profile: dict[str, Any]) -> None:
    training_rows = flights(4000, seed=1).sample(200, random_state=0)
    report = data_quality(profile, training_rows)
    assert report["out_of_range"] == {}
    assert report["unseen_categories"] == {}
    assert set(report["missing"]) == {"temp", "hour", "carrier"}


def test_quality_from_counts_is_data_quality(profile: dict[str, Any]) -> None:
    frame = pd.DataFrame({"temp": [50.0, 400.0, None], "carrier": ["UA", "ZZ", None]})
    assert quality_from_counts(profile, count_frame(profile, frame), 3) == data_quality(profile, frame)
