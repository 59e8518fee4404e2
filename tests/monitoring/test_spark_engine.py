"""`monitoring.engine: spark`: a window's statistics computed by Spark over the same log give
the local engine's (DuckDB's) numbers, every count exactly and every metric to 1e-9.

One Spark session for the module (local[1]: the machine is shared); each check compares the
two engines on one real `ParquetLogStore` log, rows still in its write-ahead log included.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.config import parse_config
from modelloop.errors import ConfigError
from modelloop.monitoring import run_monitoring
from modelloop.monitoring.window import count_period, measure_window, with_prediction
from modelloop.stats import build_profile
from modelloop.stats.metrics import ESTIMABLE, METRICS, TASK_METRICS
from modelloop.store import LoggedRequest, LogStore, MemoryLogStore, ParquetLogStore

pytest.importorskip("pyspark")
pytestmark = pytest.mark.integration

NUMERIC = ["x1", "steps", "far"]
CATEGORICAL = ["color", "city"]
START = datetime(2024, 3, 1)
AS_OF = datetime(2024, 3, 8)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from modelloop import spark as sessions

    session = sessions.session("local[1]")
    yield session
    sessions.stop()


def features(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x1": rng.normal(shift, 1.0, n).round(3),
            "steps": rng.choice([0.0, 1.5, 3.0, 4.5], n, p=[0.5, 0.2, 0.2, 0.1]),  # point masses
            "far": rng.uniform(0, 100, n).round(1),
            "color": rng.choice(["red", "green", "blue", "it's", "back\\slash"], n),
            "city": rng.choice([f"c{i:02d}" for i in range(40)], n),  # more than the profile keeps
        }
    )


def profiles() -> dict[int, dict[str, Any]]:
    found = {}
    for version in (1, 2, 3):
        reference = features(2000, seed=version, shift=0.5 * version)
        profile = build_profile(reference, NUMERIC, CATEGORICAL, max_categories=20 + version)
        rng = np.random.default_rng(version)
        held = pd.DataFrame({"p": rng.beta(2, 5, 1000)})
        profile["prediction"] = build_profile(held, ["p"], [])["features"]["p"]
        found[version] = profile
    return found


def served(n: int = 3000, seed: int = 5) -> pd.DataFrame:
    """A week served by three versions, with holes, unseen and out-of-range values."""
    rng = np.random.default_rng(seed)
    frame = features(n, seed, shift=1.5)
    frame.insert(0, "row_id", np.arange(n, dtype="int64") + 10_000)
    seconds = np.sort(rng.uniform(1, 7 * 86400, n)).round()
    frame["ts"] = pd.Timestamp(START) + pd.to_timedelta(seconds, unit="s")
    frame["seg"] = rng.choice(["north", "south", "east"], n)
    frame.loc[rng.random(n) < 0.05, "seg"] = None
    day = (frame["ts"] - pd.Timestamp(START)).dt.days
    frame["_model_version"] = np.select([day < 2, day < 4], [1, 2], 3).astype("int64")
    frame["_prediction"] = rng.beta(2, 4, n)
    frame.loc[rng.random(n) < 0.01, "_prediction"] = np.nan
    frame["_request_id"] = [f"req-{i // 25}" for i in range(n)]
    frame["_served_at"] = pd.Timestamp("2024-03-09")
    frame.loc[rng.random(n) < 0.04, "x1"] = np.nan
    frame.loc[:3, "x1"] = np.inf
    frame.loc[10:30, "far"] = 250.0  # above the reference range
    frame.loc[31:35, "far"] = -5.0  # below it
    frame.loc[rng.random(n) < 0.03, "color"] = None
    frame.loc[40:80, "color"] = "violet"  # a category no reference saw
    frame.loc[81:85, "color"] = "o'range"
    frame["label"] = (rng.random(n) < frame["_prediction"].fillna(0.3) + 0.1).astype("int64")
    return frame


def fill(store: LogStore, frame: pd.DataFrame) -> None:
    """Two thirds as files, the rest through the write-ahead log (left there), and labels for
    part of it: some relabelled, some sent with text ids, one for a row of no window."""
    logged = frame.drop(columns=["label"])
    cut = len(logged) * 2 // 3
    store.append_predictions(logged.iloc[:cut])
    requests = []
    for request_id, rows in logged.iloc[cut:].groupby("_request_id", sort=False):
        columns = {name: rows[name].tolist() for name in [*NUMERIC, *CATEGORICAL, "seg", "row_id"]}
        columns["ts"] = [t.to_pydatetime() for t in rows["ts"]]
        requests.append(
            LoggedRequest(str(request_id), int(rows["_model_version"].iloc[0]), datetime(2024, 3, 9),
                          columns, rows["_prediction"].tolist())
        )
    store.append_requests(requests)
    rng = np.random.default_rng(3)
    # A missing prediction with a label would make the metrics refuse: those rows get none.
    labelled = frame.loc[(rng.random(len(frame)) < 0.6) & frame["_prediction"].notna(), ["row_id", "label"]]
    store.append_labels(labelled.iloc[: len(labelled) // 3].assign(label=lambda f: 1 - f["label"]))
    store.append_labels(labelled.assign(row_id=labelled["row_id"].astype(str)))
    store.append_labels(pd.DataFrame({"row_id": [7], "label": [1]}))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParquetLogStore]:
    logs = ParquetLogStore(
        tmp_path_factory.mktemp("logs"), "shop", id_column="row_id", timestamp_column="ts",
        target_column="label", flush_in_worker=False, flush_interval=3600,
    )
    fill(logs, served())
    yield logs
    logs.close()


def config(**monitoring: Any) -> Any:
    return parse_config(
        {
            "name": "shop",
            "task": "classification",
            "data": {
                "source": "shop.parquet", "timestamp": "ts", "target": "label", "id": "row_id",
                "features": {"numeric": NUMERIC, "categorical": CATEGORICAL},
            },
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "evaluation": {"metric": "roc_auc"},
            "monitoring": {"label_delay": "1d", "min_labelled_rows": 50, **monitoring},
        },
        "modelloop.yaml",
    )


#: Every metric modelloop knows: labels are 0/1, so the regression metrics are defined too.
EVERY_METRIC = list(dict.fromkeys([*TASK_METRICS["classification"], *TASK_METRICS["regression"], *METRICS]))


def measured(
    logs: LogStore, spark: Any, *, start: datetime = AS_OF - timedelta(days=7), end: datetime = AS_OF,
    **given: Any,
) -> Any:
    arguments: dict[str, Any] = {
        "profiles": profiles().__getitem__, "id_column": "row_id", "timestamp": "ts", "target": "label",
        "labelled_until": AS_OF - timedelta(days=1), "metric": "roc_auc", "metrics": EVERY_METRIC,
        "estimable": sorted(ESTIMABLE), "segments": ["color"], **given,
    }
    return logs.query(start, end, lambda views: measure_window(views, **arguments), spark=spark)


def assert_same(got: Any, expected: Any, where: str = "") -> None:
    """Equal, floats to 1e-9 (NaN equal to NaN), everything else exactly."""
    if isinstance(expected, float) and isinstance(got, float):
        both_nan = math.isnan(got) and math.isnan(expected)
        same = both_nan or math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)
        assert same, f"{where}: {got!r} != {expected!r}"
    elif isinstance(expected, Mapping):
        assert isinstance(got, Mapping) and list(got) == list(expected), f"{where}: {got!r} != {expected!r}"
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list | tuple):
        assert isinstance(got, list | tuple), f"{where}: {got!r} != {expected!r}"
        assert len(got) == len(expected), f"{where}: {got!r} != {expected!r}"
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert got == expected and type(got) is type(expected), f"{where}: {got!r} != {expected!r}"


def test_the_window_on_spark_has_the_local_numbers(store: ParquetLogStore, spark: Any) -> None:
    local, on_spark = measured(store, None), measured(store, spark)
    # Some labels came with their ids as text: both engines join the ids as text.
    # The window is what it should be: three versions, every kind of hole, labels and segments.
    assert [v.version for v in local.versions] == [1, 2, 3] and local.n_rows == 3000
    assert local.quality["color"].unseen > 0 and local.quality["far"].above > 0
    assert local.quality["x1"].missing > 0 and 0 < local.labelled < local.eligible
    assert {s["value"] for s in local.segments} >= {"(missing)", "it's", "back\\slash", "violet"}
    assert list(local.metrics) == EVERY_METRIC and None not in local.metrics.values()
    assert_same(dataclasses.asdict(on_spark), dataclasses.asdict(local), "window")


def test_one_version_and_the_estimates_without_labels(store: ParquetLogStore, spark: Any) -> None:
    # One version served the first day; labels count only after the window: CBPE estimates.
    given = {"start": START, "end": START + timedelta(days=1), "labelled_until": START, "min_labelled": 10,
             "segments": ["seg"]}
    local = measured(store, None, **given)
    assert [v.version for v in local.versions] == [1] and local.labelled == 0
    assert all(value is not None for value in local.estimated.values()) and local.estimated
    assert_same(dataclasses.asdict(measured(store, spark, **given)), dataclasses.asdict(local), "window")


def test_a_reference_period_counted_on_spark(store: ParquetLogStore, spark: Any) -> None:
    counted = with_prediction(profiles()[2])

    def period(engine: Any) -> Any:
        return store.query(START, START + timedelta(days=3), lambda v: count_period(v, counted), spark=engine)

    local = period(None)
    assert local[0] > 0
    assert_same(dataclasses.asdict(_Pair(*period(spark))), dataclasses.asdict(_Pair(*local)), "period")


@dataclasses.dataclass
class _Pair:
    rows: int
    counts: dict[str, Any]


def test_an_empty_window_on_spark(store: ParquetLogStore, spark: Any) -> None:
    memory = MemoryLogStore("shop", id_column="row_id", timestamp_column="ts", target_column="label")
    assert dataclasses.asdict(measured(memory, spark)) == dataclasses.asdict(measured(memory, None))
    before = {"start": START - timedelta(days=9), "end": START - timedelta(days=8)}
    assert measured(store, spark, **before) == measured(store, None, **before)


def test_the_monitoring_result_is_the_same_on_both_engines(
    store: ParquetLogStore, spark: Any, tmp_path: Path
) -> None:
    found = {}
    for engine in ("local", "spark"):
        # The three days before the window, from the log, are the reference.
        settings = config(engine=engine, spark_master="local[1]", window="3d", reference="rolling",
                          reference_window="3d", min_reference_rows=100)
        result = run_monitoring(
            settings, logs=store, as_of=AS_OF, reports_dir=tmp_path / engine, profiles=profiles().__getitem__,
            write=False,
        )
        found[engine] = {k: v for k, v in result.to_dict().items() if not k.startswith("report_")}
    assert found["local"]["drift"]["features"] and found["local"]["reference"]["kind"] == "rolling"
    assert_same(found["spark"], found["local"], "result")


@pytest.mark.parametrize("value", ["Spark", "duckdb", 3])
def test_a_bad_engine_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ConfigError, match=re.escape("monitoring.engine")):
        config(engine=value)


def test_modelloop_monitor_on_spark_prints_the_local_numbers(tmp_path: Path) -> None:
    from tests.integration.conftest import cli_json
    from tests.integration.synthetic import PROJECT, day, make_frame, write_project

    from modelloop.project import open_project

    frame = make_frame(days=38)
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    write_project(tmp_path, estimator="sklearn.linear_model.LogisticRegression", params="{C: 1.0}")
    trained = cli_json("train", "--as-of", day(30).isoformat(), cwd=tmp_path)
    assert trained["decision"]["outcome"] == "promoted", trained
    # A served week, logged as the server logs it, and the labels of most of it.
    week = frame[frame["event_time"] > pd.Timestamp(day(30))].reset_index(drop=True)
    rng = np.random.default_rng(0)
    project = open_project(tmp_path / "modelloop.yaml")
    try:
        project.logs.append_predictions(week.drop(columns=["label"]).assign(
            _prediction=rng.beta(2, 3, len(week)), _model_version=trained["version"],
            _request_id=[f"r{i // 20}" for i in range(len(week))], _served_at=pd.Timestamp(day(38)),
        ))
        labelled = week[rng.random(len(week)) < 0.7]
        project.store_labels(labelled["row_id"].tolist(), labelled["label"].tolist())
    finally:
        project.logs.close()
    on_spark = PROJECT.replace("  window: 7d\n", "  window: 7d\n  engine: spark\n  spark_master: local[1]\n")
    (tmp_path / "spark.yaml").write_text(on_spark.format(
        estimator="sklearn.linear_model.LogisticRegression", params="{C: 1.0}"))
    found = {}
    for name in ("modelloop.yaml", "spark.yaml"):
        result = cli_json("monitor", "--as-of", day(37).isoformat(), "--no-retrain", "--project", name,
                          cwd=tmp_path)
        found[name] = {k: v for k, v in result.items() if k not in {"report_json", "report_html", "alerts"}}
    assert found["modelloop.yaml"]["n_labelled"] > 0 and found["modelloop.yaml"]["drift"]["features"]
    assert_same(found["spark.yaml"], found["modelloop.yaml"], "monitor")
    assert not (tmp_path / "spark-warehouse").exists()  # Spark leaves nothing in the project folder
