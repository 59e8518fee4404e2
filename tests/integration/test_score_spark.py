"""`modelloop score --engine spark` on a real MLflow-registered model: the local engine's columns
and numbers (and plain MLflow's), the contract checked on Spark, nothing left at OUTPUT on a
failure, `--master` recorded, and a bad master told in one line.

One Spark session for the module; only the bad-master test starts the CLI (and its own JVM).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.engines import LocalEngine, get_engine
from modelloop.engines.spark import SparkEngine
from modelloop.errors import DataError, UsageError
from modelloop.project import open_project
from modelloop.serving.holder import ServedModel
from tests.integration.conftest import cli_json, run_cli
from tests.integration.synthetic import day, make_frame, write_project
from tests.integration.test_score import ADDED, plain_mlflow

pytest.importorskip("pyspark")
pytestmark = pytest.mark.integration

MASTER = "local[2]"  # two cores: a one-row-group Parquet file is spread over both, in order


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("score-spark")
    frame = make_frame()
    frame.to_parquet(root / "data.parquet", index=False)
    write_project(root, params="{max_iter: 20, random_state: 0}")  # small: the engine is tested
    train = cli_json("train", "--as-of", day(45).isoformat(), cwd=root)
    assert train["decision"]["outcome"] == "promoted", train
    batch = frame[frame["event_time"] >= pd.Timestamp(day(46))].drop(columns=["label"])
    batch = batch.reset_index(drop=True)
    batch.loc[10, "row_id"] = 'an id with a line break\n, a comma and a "quote"'  # one row in CSV
    batch.to_parquet(root / "batch.parquet", index=False)
    batch.to_csv(root / "batch.csv", index=False)
    return {"root": root, "batch": batch, "version": train["version"]}


@pytest.fixture(scope="module")
def served(trained: dict[str, Any]) -> ServedModel:
    return open_project(trained["root"] / "modelloop.yaml").load_served_model()


@pytest.fixture(scope="module")
def spark_engine() -> Iterator[SparkEngine]:
    from modelloop import spark

    spark.session(MASTER)
    try:
        yield SparkEngine(MASTER)
    finally:
        spark.stop()


@pytest.mark.parametrize(("source", "target"), [("batch.parquet", "out.parquet"), ("batch.csv", "out.csv")])
def test_the_local_engines_columns_and_numbers(
    trained: dict[str, Any], served: ServedModel, spark_engine: SparkEngine, source: str, target: str
) -> None:
    root = trained["root"]
    on_spark, on_local = root / f"spark-{target}", root / f"local-{target}"

    summary = spark_engine.score(root / source, on_spark, model=served, chunk_rows=1000)
    LocalEngine().score(root / source, on_local, model=served, chunk_rows=1000)

    assert (summary.engine, summary.rows, summary.version) == ("spark", 8640, trained["version"])
    assert summary.chunks == 2  # one partition in the file, spread over both cores in order
    read = pd.read_parquet if target.endswith(".parquet") else pd.read_csv
    scored, local = read(on_spark), read(on_local)
    assert list(scored.columns) == [*trained["batch"].columns, *ADDED]
    np.testing.assert_allclose(scored["_prediction"], local["_prediction"], rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(scored, local)  # every column, types included
    if target.endswith(".csv"):
        assert on_spark.read_bytes() == on_local.read_bytes()  # the same writer, the same text
    expected = plain_mlflow(root, trained["version"], read(root / source))
    np.testing.assert_allclose(scored["_prediction"], expected, rtol=0, atol=1e-9)
    assert not [p.name for p in root.iterdir() if p.name.startswith(f".spark-{target}")]


def test_a_contract_violation_names_the_column_and_rows_and_leaves_no_output(
    trained: dict[str, Any], served: ServedModel, spark_engine: SparkEngine
) -> None:
    root = trained["root"]
    bad = trained["batch"].astype({"x1": object})
    bad.loc[[3, 6001], "x1"] = ["twelve", "n/a!"]  # data rows 4 and 6002
    bad.to_csv(root / "bad.csv", index=False)
    target = root / "bad-scored.parquet"
    target.write_bytes(b"previous")

    with pytest.raises(DataError) as caught:
        spark_engine.score(root / "bad.csv", target, model=served, chunk_rows=1000)

    message = str(caught.value)
    assert str(root / "bad.csv") in message
    assert (
        "column 'x1' must hold numbers but holds text: 2 row(s) (rows 4, 6002; e.g. 'twelve', 'n/a!')"
    ) in message
    assert "nothing was written to" in message
    assert target.read_bytes() == b"previous"
    assert not [p.name for p in root.iterdir() if p.name.startswith(".bad-scored")]


def test_a_missing_feature_is_told_before_spark_reads_a_row(
    trained: dict[str, Any], served: ServedModel, spark_engine: SparkEngine
) -> None:
    root = trained["root"]
    trained["batch"].drop(columns=["x2", "seg"]).to_parquet(root / "short.parquet", index=False)

    with pytest.raises(DataError, match=r"2 columns are missing: 'x2', 'seg'"):
        spark_engine.score(root / "short.parquet", root / "short-out.csv", model=served, chunk_rows=10)
    assert not list(root.glob("*short-out*"))


def test_master_belongs_to_the_spark_engine() -> None:
    assert get_engine("spark", master="local[3]").name == "spark"
    with pytest.raises(UsageError, match="--master is Spark's"):
        get_engine("local", master="local[2]")


def test_project_score_records_the_engine_and_master(
    trained: dict[str, Any], spark_engine: SparkEngine
) -> None:
    root = trained["root"]
    project = open_project(root / "modelloop.yaml")

    summary = project.score(root / "batch.csv", root / "project.parquet", engine="spark", master=MASTER)

    assert (summary.engine, summary.rows) == ("spark", 8640)
    run = project.db.runs(limit=1)[0]
    assert (run["kind"], run["status"]) == ("score", "succeeded")
    assert (run["params"]["engine"], run["params"]["master"]) == ("spark", MASTER)
    assert run["detail"]["engine"] == "spark"


def test_a_bad_master_is_one_clear_line(trained: dict[str, Any]) -> None:
    root = trained["root"]

    done = run_cli(
        "score", "batch.parquet", "--out", "never.parquet", "--engine", "spark", "--master", "nowhere",
        cwd=root, check=False, timeout=120,
    )

    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    assert "cannot start Spark (master nowhere)" in " ".join(done.stderr.split())
    assert not list(root.glob("*never*"))


def test_the_spark_engine_says_which_extra_it_needs_without_pyspark(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    from modelloop import spark

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # as if PySpark were not installed
    with pytest.raises(UsageError, match=r"pip install 'modelloop\[spark\]'"):
        spark.session("local[1]")
