"""The monitoring pipeline measures a window where the log lives (DuckDB over the Parquet files or
the memory store's frames) and gives the numbers the pandas implementation gave: the old one is
kept here as the oracle, and both run on the same realistic week."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from modelloop.config import ProjectConfig, parse_config
from modelloop.monitoring import MonitoringResult, ProfileCache, merge_drift, run_monitoring
from modelloop.monitoring.drift import DriftResult, FeatureDrift
from modelloop.registry import MemoryRegistry
from modelloop.stats import bin_shares, build_profile, psi
from modelloop.stats.profile import as_categories, as_numeric
from modelloop.store import LoggedRequest, LogStore, MemoryLogStore, ParquetLogStore

NUMERIC = ["hour", "distance", "temp", "dewp", "pressure", "precip", "wind_speed"]
CATEGORICAL = ["carrier", "origin", "dest"]
START = datetime(2013, 6, 1)
AS_OF = datetime(2013, 6, 8)


def make_config(**monitoring: Any) -> ProjectConfig:
    return parse_config(
        {
            "name": "flights",
            "task": "classification",
            "data": {
                "source": "flights.parquet",
                "timestamp": "sched_dep",
                "target": "delayed",
                "id": "flight_id",
                "features": {"numeric": NUMERIC, "categorical": CATEGORICAL},
            },
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "evaluation": {"metric": "roc_auc"},
            "monitoring": {
                "label_delay": "1d",
                "drift_threshold": 0.25,
                "performance_floor": 0.8,
                "min_labelled_rows": 100,
                **monitoring,
            },
        },
        "modelloop.yaml",
    )


def flights(n: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    """Flights with the demo's kinds of features: integer hours, point masses (precipitation is
    mostly 0, wind speeds come in steps), a long tail of destinations, weather that drifts."""
    rng = np.random.default_rng(seed)
    precip = np.round(rng.exponential(0.04, n), 2)
    precip[rng.random(n) < 0.9] = 0.0
    wind = rng.choice(np.arange(0, 14) * 1.15078, n)
    return pd.DataFrame(
        {
            "hour": rng.integers(5, 24, n).astype("float64"),
            "distance": rng.choice([187.0, 229.0, 544.0, 1065.0, 1416.0, 2475.0], n),
            "temp": (rng.normal(60, 15, n) + shift).round(2),
            "dewp": (rng.normal(45, 15, n) + shift).round(2),
            "pressure": (rng.normal(1017, 7, n) - 0.75 * shift).round(1),
            "precip": precip,
            "wind_speed": wind,
            "carrier": rng.choice(["UA", "B6", "EV", "DL", "AA", "MQ"], n),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
            "dest": rng.choice([f"D{i:02d}" for i in range(60)], n),
        }
    )


def reference_profiles() -> dict[int, dict[str, Any]]:
    return {
        1: build_profile(flights(3000, seed=1), NUMERIC, CATEGORICAL),
        2: build_profile(flights(3000, seed=2, shift=2.0), NUMERIC, CATEGORICAL, max_categories=30),
    }


def week(seed: int = 7, n: int = 6000) -> pd.DataFrame:
    """A served week: version 1 for two days, then version 2; weather shifted; a few holes."""
    rng = np.random.default_rng(seed)
    frame = flights(n, seed, shift=8.0)
    frame["flight_id"] = np.arange(n, dtype="int64") + 100_000
    seconds = np.sort(rng.uniform(1, 7 * 86400, n)).round()
    frame["sched_dep"] = pd.Timestamp(START) + pd.to_timedelta(seconds, unit="s")
    frame["_model_version"] = np.where(frame["sched_dep"] < pd.Timestamp(START + timedelta(days=2)), 1, 2)
    frame["_prediction"] = np.clip(0.2 + 0.004 * (frame["hour"] - 12) + rng.normal(0, 0.1, n), 0.01, 0.99)
    frame["_request_id"] = [f"req-{i // 50}" for i in range(n)]
    frame["_served_at"] = pd.Timestamp("2024-01-01")
    frame.loc[rng.random(n) < 0.03, "temp"] = np.nan
    frame.loc[rng.random(n) < 0.02, "carrier"] = None
    frame.loc[:40, "dest"] = "NEW"  # a destination the reference never saw
    frame.loc[41:45, "pressure"] = 1100.0  # out of the reference range
    # Delays follow the prediction, so the metric means something.
    frame["delayed"] = (rng.random(n) < frame["_prediction"] + 0.1).astype("int64")
    return frame


def fill(store: LogStore, frame: pd.DataFrame, *, ids_as_text: bool = False) -> None:
    """Log the week (a third through the write-ahead log, as a server does) and label half of it,
    with relabels, a label for a row outside the window and labels sent as text."""
    served = frame.drop(columns=["delayed"])
    cut = len(served) * 2 // 3
    store.append_predictions(served.iloc[:cut])
    requests = []
    for request_id, rows in served.iloc[cut:].groupby("_request_id", sort=False):
        columns = {name: rows[name].tolist() for name in [*NUMERIC, *CATEGORICAL, "flight_id", "sched_dep"]}
        columns["sched_dep"] = [t.to_pydatetime() for t in rows["sched_dep"]]
        requests.append(
            LoggedRequest(
                str(request_id), int(rows["_model_version"].iloc[0]), datetime(2024, 1, 1), columns,
                rows["_prediction"].tolist(),
            )
        )
    store.append_requests(requests)
    rng = np.random.default_rng(11)
    labelled = frame.loc[rng.random(len(frame)) < 0.5, ["flight_id", "delayed"]]
    first = labelled.assign(delayed=1 - labelled["delayed"])  # wrong at first, corrected later
    store.append_labels(first.iloc[: len(first) // 4])
    if ids_as_text:
        labelled = labelled.assign(flight_id=labelled["flight_id"].astype(str))
    store.append_labels(labelled)
    store.append_labels(pd.DataFrame({"flight_id": [5], "delayed": [1]}))  # not in the window


# -- the oracle: the pandas implementation monitoring had before it moved into DuckDB -----------


def oracle(
    config: ProjectConfig, logs: LogStore, profiles: Callable[[int], Mapping[str, Any]], as_of: datetime
) -> dict[str, Any]:
    mon, data = config.monitoring, config.data
    predictions = logs.read_predictions(as_of - mon.window, as_of)
    parts: list[DriftResult] = []
    used: dict[int, Mapping[str, Any]] = {}
    versions: dict[str, int] = {}
    for key, rows in predictions.groupby("_model_version", sort=True):
        version = int(str(key))
        used[version] = profiles(version)
        parts.append(_old_compute_drift(used[version], rows, mon.drift_threshold))
        versions[str(version)] = len(rows)
    drift = merge_drift(parts, threshold=mon.drift_threshold)
    quality = _old_data_quality(used[max(used)], predictions)
    joined = _old_labelled(predictions, logs.read_labels(), data.id_column, data.target)
    joined = joined[joined[data.timestamp] <= pd.Timestamp(as_of - mon.label_delay)]
    value = float(sk.roc_auc_score(joined[data.target], joined["_prediction"]))
    return {
        "n_rows": len(predictions),
        "n_labelled": len(joined),
        "versions": versions,
        "drift": drift.to_dict(),
        "quality": quality,
        "metric": value,
    }


def _old_compute_drift(profile: Mapping[str, Any], frame: pd.DataFrame, threshold: float) -> DriftResult:
    results = []
    for name, feature in profile["features"].items():
        if name not in frame.columns:
            continue
        reference = np.asarray(feature["shares"], dtype=float)
        current = bin_shares(feature, frame[name])
        value = psi(reference, current) if len(frame) else 0.0
        results.append(
            FeatureDrift(str(name), str(feature["kind"]), value, value > threshold, len(frame),
                         [str(x) for x in feature["labels"]], [float(v) for v in reference],
                         [float(v) for v in current])
        )
    results.sort(key=lambda item: (-item.psi, item.feature))
    return DriftResult(results, threshold, len(frame))


def _old_data_quality(profile: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    n_rows = len(frame)
    out_of_range: dict[str, Any] = {}
    unseen: dict[str, Any] = {}
    missing: dict[str, float] = {}
    for name, feature in profile["features"].items():
        values = frame[name]
        if feature["kind"] == "numeric":
            numbers = as_numeric(values)
            missing[name] = int(np.isnan(numbers).sum()) / n_rows
            present = numbers[~np.isnan(numbers)]
            count = int(((present < feature["min"]) | (present > feature["max"])).sum())
            if count:
                out_of_range[name] = {
                    "count": count, "share": count / n_rows,
                    "min_seen": float(present.min()), "max_seen": float(present.max()),
                    "reference_min": float(feature["min"]), "reference_max": float(feature["max"]),
                }
        else:
            present_values = as_categories(values)
            missing[name] = (n_rows - int(present_values.size)) / n_rows
            known = [str(c) for c in feature["categories"]]
            new = present_values[~present_values.isin(known)]
            if len(new) and int(feature["n_categories"]) <= len(known):
                ordered = sorted(((str(k), int(v)) for k, v in new.value_counts().items()),
                                 key=lambda kv: (-kv[1], kv[0]))
                unseen[name] = {"count": int(new.size), "share": int(new.size) / n_rows,
                                "values": [k for k, _ in ordered[:10]]}
    return {"n_rows": n_rows, "out_of_range": out_of_range, "unseen_categories": unseen, "missing": missing}


def _old_labelled(
    predictions: pd.DataFrame, labels: pd.DataFrame, id_column: str, target: str
) -> pd.DataFrame:
    left = predictions.assign(_key=predictions[id_column].astype(str))
    right = (
        labels[[id_column, target]]
        .assign(_key=labels[id_column].astype(str))
        .drop(columns=[id_column])
        .drop_duplicates("_key", keep="last")
    )
    return left.merge(right, on="_key", how="inner").drop(columns=["_key"])


# -- the tests ----------------------------------------------------------------------------------


def memory_store() -> LogStore:
    return MemoryLogStore(
        "flights", id_column="flight_id", timestamp_column="sched_dep", target_column="delayed"
    )


@pytest.fixture(params=["memory", "parquet"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], LogStore]:
    def make() -> LogStore:
        if request.param == "memory":
            return memory_store()
        return ParquetLogStore(
            tmp_path / "logs", "flights", id_column="flight_id", timestamp_column="sched_dep",
            target_column="delayed", flush_in_worker=False,
        )

    return make


#: What the oracle computed: PSI and the bars per feature, and the quality findings it knew.
_ORACLE_FEATURE_KEYS = (
    "feature", "kind", "psi", "drifted", "n", "labels", "reference_shares", "current_shares",
)


def as_compared(result: MonitoringResult) -> dict[str, Any]:
    drift = result.drift.to_dict() if result.drift else None
    if drift is not None:
        drift = {
            **{key: drift[key] for key in ("threshold", "n_rows", "drifted", "share_drifted")},
            "features": [{key: f[key] for key in _ORACLE_FEATURE_KEYS} for f in drift["features"]],
        }
    quality = {key: result.quality[key] for key in ("n_rows", "out_of_range", "unseen_categories")}
    quality["missing"] = {name: found["share"] for name, found in result.quality["missing"].items()}
    return {
        "n_rows": result.n_rows,
        "n_labelled": result.n_labelled,
        "versions": result.versions,
        "drift": drift,
        "quality": quality,
        "metric": result.metric_value,
    }


def oracle_compared(expected: dict[str, Any]) -> dict[str, Any]:
    drift = expected["drift"]
    expected["drift"] = {
        **{key: drift[key] for key in ("threshold", "n_rows", "drifted", "share_drifted")},
        "features": [{key: f[key] for key in _ORACLE_FEATURE_KEYS} for f in drift["features"]],
    }
    return expected


@pytest.mark.parametrize("ids_as_text", [False, True], ids=["typed-ids", "labels-as-text"])
def test_the_window_measured_in_duckdb_gives_the_pandas_numbers(
    make_store: Callable[[], LogStore], tmp_path: Path, ids_as_text: bool
) -> None:
    config = make_config()
    profiles = reference_profiles()
    store = make_store()
    try:
        fill(store, week(), ids_as_text=ids_as_text)
        for as_of in (AS_OF, AS_OF - timedelta(days=3, hours=5)):  # two versions, then one
            expected = oracle_compared(oracle(config, store, profiles.__getitem__, as_of))
            result = run_monitoring(
                config, logs=store, as_of=as_of, reports_dir=tmp_path / "r", profiles=profiles.__getitem__
            )
            got = as_compared(result)
            assert math.isclose(got.pop("metric"), expected.pop("metric"), rel_tol=1e-9, abs_tol=1e-12)
            assert got == expected
        # The week is what the numbers say it is: the weather moved and the rest did not.
        drifted = set(result.drift.drifted if result.drift else [])
        assert {"temp", "pressure"} <= drifted <= {"temp", "dewp", "pressure"}
        assert result.quality["unseen_categories"]["dest"]["values"] == ["NEW"]
        assert "pressure" in result.quality["out_of_range"]
    finally:
        store.close()


def test_labels_arrive_with_the_delay(tmp_path: Path) -> None:
    config = make_config(min_labelled_rows=1)
    store = memory_store()
    frame = week(n=600)
    fill(store, frame)
    early = run_monitoring(
        config, logs=store, as_of=START + timedelta(hours=12), reports_dir=tmp_path,
        profiles=reference_profiles().__getitem__,
    )
    assert early.n_rows > 0 and early.n_labelled == 0
    assert early.metric_note is not None
    assert "newer than as-of minus monitoring.label_delay" in early.metric_note
    later = run_monitoring(
        config, logs=store, as_of=AS_OF, reports_dir=tmp_path, profiles=reference_profiles().__getitem__
    )
    cutoff = pd.Timestamp(AS_OF - timedelta(days=1))
    assert 0 < later.n_labelled <= int((frame["sched_dep"] <= cutoff).sum())


def test_no_labels_yet_says_so(tmp_path: Path) -> None:
    store = memory_store()
    store.append_predictions(week(n=300).drop(columns=["delayed"]))
    profiles = reference_profiles()
    result = run_monitoring(
        make_config(), logs=store, as_of=AS_OF, reports_dir=tmp_path, profiles=profiles.__getitem__
    )
    assert (result.n_rows, result.n_labelled, result.metric_value) == (300, 0, None)
    assert result.metric_note == "no labels have arrived for this window yet"


def test_too_few_labels_say_how_many(tmp_path: Path) -> None:
    config = make_config(min_labelled_rows=100_000)
    store = memory_store()
    fill(store, week(n=600))
    result = run_monitoring(
        config, logs=store, as_of=AS_OF, reports_dir=tmp_path, profiles=reference_profiles().__getitem__
    )
    assert result.metric_value is None
    assert result.metric_note == (
        f"{result.n_labelled:,} labelled rows, fewer than monitoring.min_labelled_rows (100,000)"
    )


def test_an_empty_window_is_no_finding(tmp_path: Path) -> None:
    result = run_monitoring(
        make_config(), logs=memory_store(), as_of=AS_OF, reports_dir=tmp_path,
        profiles=lambda version: pytest.fail("no rows: no profile needed"),
    )
    assert (result.n_rows, result.drift, result.breaches) == (0, None, [])
    assert result.metric_note == "no predictions in the window"
    assert result.report_json is not None and result.report_json.exists()


def test_profiles_are_read_once_per_version_and_never_from_the_registry(tmp_path: Path) -> None:
    profiles = reference_profiles()
    asked: list[int] = []

    def source(version: int) -> Mapping[str, Any]:
        asked.append(version)
        return profiles[version]

    store = memory_store()
    fill(store, week(n=600))
    run_monitoring(make_config(), logs=store, as_of=AS_OF, reports_dir=tmp_path, profiles=source)
    assert sorted(asked) == [1, 2]


def test_by_default_the_profiles_come_from_the_registry(tmp_path: Path) -> None:
    class Profiles(MemoryRegistry):
        def read_json(self, name: str, version: int, artifact: str) -> Any:
            assert (name, artifact) == ("flights", "profile.json")
            return reference_profiles()[version]

    store = memory_store()
    frame = week(n=600)
    fill(store, frame)
    result = run_monitoring(make_config(), logs=store, registry=Profiles(), as_of=AS_OF, reports_dir=tmp_path)
    served = frame["_model_version"].value_counts()
    assert result.versions == {str(v): int(n) for v, n in sorted(served.items())}
    with pytest.raises(TypeError, match="needs `profiles` or a `registry`"):
        run_monitoring(make_config(), logs=store, as_of=AS_OF, reports_dir=tmp_path)


def test_the_profile_cache_fetches_a_version_once(tmp_path: Path) -> None:
    profiles = reference_profiles()
    fetched: list[int] = []

    def fetch(version: int) -> Mapping[str, Any]:
        fetched.append(version)
        return profiles[version]

    cache = ProfileCache(tmp_path / "profiles", fetch)
    assert cache(1) == profiles[1]
    assert ProfileCache(tmp_path / "profiles")(1) == profiles[1]  # from the file, no fetch
    assert fetched == [1]
    cache.put(2, profiles[2])
    assert cache(2) == profiles[2] and fetched == [1]
    assert sorted(p.name for p in (tmp_path / "profiles").iterdir()) == ["1.json", "2.json"]


def test_a_log_without_the_profiled_features_still_counts_rows_and_labels(tmp_path: Path) -> None:
    store = memory_store()
    frame = week(n=400)
    store.append_predictions(frame[["flight_id", "sched_dep", "_prediction", "_model_version",
                                    "_request_id", "_served_at"]])
    store.append_labels(frame[["flight_id", "delayed"]])
    result = run_monitoring(
        make_config(min_labelled_rows=1), logs=store, as_of=AS_OF, reports_dir=tmp_path,
        profiles=reference_profiles().__getitem__,
    )
    assert result.n_rows == 400 and result.n_labelled > 0 and result.metric_value is not None
    assert result.drift is not None and result.drift.features == []
    assert result.breaches == [] or all(b.kind != "drift" for b in result.breaches)
