"""A set of rows counted against a reference profile: in pandas (`count_frame`) and in DuckDB
(`DistinctValues` + `count_queries`), with the same numbers on the cases binning gets wrong."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from modelloop.stats import (
    DistinctValues,
    FeatureCounts,
    build_profile,
    count_frame,
    count_queries,
    merge_counts,
)


def training(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    precip = np.round(rng.exponential(0.05, n), 2)
    precip[rng.random(n) < 0.85] = 0.0  # a point mass holding most rows
    wind = rng.choice([0.0, 4.60312, 5.7539, 6.90468, 8.05546], n) + np.where(
        rng.random(n) < 0.2, rng.normal(20, 5, n), 0.0
    )
    return pd.DataFrame(
        {
            "hour": rng.integers(5, 24, n).astype("float64"),
            "temp": rng.normal(55, 17, n).round(2),
            "precip": precip,
            "wind": wind,
            "carrier": rng.choice(["UA", "B6", "EV", "DL", "AA"], n, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "dest": rng.choice([f"D{i:03d}" for i in range(80)], n),  # more than max_categories
            "gate": rng.choice([f"G{i}" for i in range(30)], n),
        }
    )


@pytest.fixture(scope="module")
def profile() -> dict[str, Any]:
    built = build_profile(
        training(), ["hour", "temp", "precip", "wind"], ["carrier", "dest", "gate"], max_categories=20
    )
    # As reloaded from the registry: JSON, so floats went through text.
    reloaded: dict[str, Any] = json.loads(json.dumps(built))
    return reloaded


def served(profile: dict[str, Any], n: int = 3000, seed: int = 1) -> pd.DataFrame:
    """Traffic with every awkward value: edges exactly, near-masses, NaN, inf, None, unseen."""
    frame = training(n, seed)
    temp, wind = profile["features"]["temp"], profile["features"]["wind"]
    frame.loc[:9, "temp"] = (temp["edges"] * 10)[:10]  # exactly on the cut points
    frame.loc[10:19, "wind"] = [m * (1 + 5e-8) for m in wind["point_masses"]] * 2  # near, not equal
    frame.loc[20:24, "wind"] = [m * (1 + 1e-6) for m in wind["point_masses"]]  # too far: intervals
    frame.loc[25:29, "temp"] = [np.nan, np.inf, -np.inf, 500.0, -300.0]  # missing twice... and out of range
    frame["carrier"] = frame["carrier"].astype(object)
    frame.loc[30:39, "carrier"] = ["ZZ"] * 6 + ["QQ"] * 3 + [None]  # unseen and missing
    frame.loc[40:44, "gate"] = ["G99", "G98", "G99", None, "G1"]
    frame.loc[45:49, "dest"] = ["NEW"] * 5  # in "other" as a bin; unseen as a category
    return frame


def sql_counts(
    profile: dict[str, Any], frame: pd.DataFrame, *, group: str | None = None, key: Any = None
) -> dict[str, FeatureCounts]:
    connection = duckdb.connect()
    try:
        connection.register("rows", frame)
        types = {str(r[0]): str(r[1]) for r in connection.execute("DESCRIBE rows").fetchall()}
        names = tuple(n for n in profile["features"] if n in types)
        distinct = DistinctValues(names, types, group=group)
        connection.execute(distinct.create("rows"))
        queries = count_queries(profile, distinct, key, every_group=group is not None and key is None)

        def rows(sql: str | None) -> list[Any]:
            return [] if sql is None else connection.execute(sql).fetchall()

        return queries.read(rows(queries.bins), rows(queries.ranges), rows(queries.unseen))
    finally:
        connection.close()


def test_sql_counts_equal_pandas_counts_on_awkward_traffic(profile: dict[str, Any]) -> None:
    frame = served(profile)
    expected = count_frame(profile, frame)
    assert sql_counts(profile, frame) == expected
    # The awkward values did land where the profile says.
    assert expected["temp"].missing == 3
    assert (expected["temp"].below, expected["temp"].above) == (1, 1)
    assert expected["carrier"].unseen == 9
    assert expected["carrier"].unseen_values == (("ZZ", 6), ("QQ", 3))
    assert expected["dest"].unseen == 5


def test_near_point_masses_land_in_the_mass(profile: dict[str, Any]) -> None:
    wind = profile["features"]["wind"]
    masses = wind["point_masses"]
    frame = pd.DataFrame({"wind": [m * (1 + 5e-8) for m in masses] + [m * (1 - 5e-8) for m in masses]})
    counts = sql_counts(profile, frame)["wind"]
    assert counts == count_frame(profile, frame)["wind"]
    assert counts.bins[: len(masses)] == tuple([2] * len(masses))


def test_numbers_logged_as_text_and_categories_logged_as_numbers(profile: dict[str, Any]) -> None:
    frame = pd.DataFrame(
        {
            "hour": pd.Series(["7", "8.0", "x", None, "23"], dtype=object),  # a client sent text
            "carrier": pd.Series([1.0, 2.5, np.nan, 1.0, 3.0]),  # a category stored as numbers
            "gate": pd.Series([True, False, None, True, True], dtype=object),
        }
    )
    assert sql_counts(profile, frame) == count_frame(profile, frame)


def test_a_free_text_feature_has_no_unseen_categories() -> None:
    names = pd.DataFrame({"note": [f"note {i}" for i in range(1500)]})  # more than are stored
    profile = json.loads(json.dumps(build_profile(names, [], ["note"])))
    frame = pd.DataFrame({"note": ["note 1", "never seen", None]})
    counted = sql_counts(profile, frame)
    assert counted == count_frame(profile, frame)
    assert counted["note"].unseen == 0
    assert counted["note"].bins[-2:] == (1, 1)  # "never seen" is in other, None is missing


def test_empty_rows_count_nothing(profile: dict[str, Any]) -> None:
    frame = served(profile).iloc[0:0]
    counted = sql_counts(profile, frame)
    assert counted == count_frame(profile, frame)
    assert all(c.rows == 0 and c.low is None for c in counted.values())


def test_groups_count_apart_and_merge_to_the_whole(profile: dict[str, Any]) -> None:
    frame = served(profile).assign(version=lambda f: np.where(np.arange(len(f)) % 3 == 0, 2, 1))
    whole = sql_counts(profile, frame, group="version")
    first = sql_counts(profile, frame, group="version", key=1)
    second = sql_counts(profile, frame, group="version", key=2)
    assert first == count_frame(profile, frame[frame["version"] == 1])
    assert second == count_frame(profile, frame[frame["version"] == 2])
    for name, counts in whole.items():
        merged = merge_counts([first[name], second[name]])
        assert (merged.bins, merged.below, merged.above, merged.low, merged.high, merged.unseen) == (
            counts.bins, counts.below, counts.above, counts.low, counts.high, counts.unseen
        )
    assert whole == count_frame(profile, frame)


def test_an_absent_feature_is_left_out(profile: dict[str, Any]) -> None:
    frame = served(profile).drop(columns=["temp", "gate"])
    counted = sql_counts(profile, frame)
    assert set(counted) == {"hour", "precip", "wind", "carrier", "dest"}
    assert counted == count_frame(profile, frame)


def test_counts_only_merge_against_the_same_profile() -> None:
    a = FeatureCounts("temp", "numeric", (1, 2, 0))
    b = FeatureCounts("temp", "numeric", (1, 2, 3, 0))
    with pytest.raises(ValueError, match="different profiles"):
        merge_counts([a, b])
    merged = merge_counts([a, FeatureCounts("temp", "numeric", (3, 0, 1), low=-1.0, high=2.0)])
    assert merged.bins == (4, 2, 1)
    assert merged.missing == 1
    assert (merged.low, merged.high) == (-1.0, 2.0)
