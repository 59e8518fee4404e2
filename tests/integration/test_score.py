"""`modelloop score` through the real CLI on a real MLflow-backed project: the numbers plain
MLflow gives for the same rows, the `scoring` settings, `--json`, and clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import cli_json, run_cli
from tests.integration.synthetic import PROJECT, day, make_frame, write_project

pytestmark = pytest.mark.integration

ADDED = ["_prediction", "_model_version"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("score")
    frame = make_frame()
    frame.to_parquet(root / "data.parquet", index=False)
    write_project(root)
    train = cli_json("train", "--as-of", day(45).isoformat(), cwd=root)
    assert train["decision"]["outcome"] == "promoted", train
    # The rows to score: the days after training, without the label, as a user would send them.
    batch = frame[frame["event_time"] >= pd.Timestamp(day(46))].drop(columns=["label"])
    batch = batch.reset_index(drop=True)
    batch.to_parquet(root / "batch.parquet", index=False)
    batch.to_csv(root / "batch.csv", index=False)
    yield {"root": root, "batch": batch, "version": train["version"]}


def plain_mlflow(root: Path, version: int, rows: pd.DataFrame) -> np.ndarray:
    import mlflow

    uri = f"sqlite:///{root / '.modelloop' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # another test in this process may have pointed it elsewhere
    model = mlflow.pyfunc.load_model(f"models:/synthetic-loop/{version}")
    return np.asarray(model.predict(rows), dtype="float64")


def test_parquet_scored_with_plain_mlflows_numbers(trained: dict[str, Any]) -> None:
    root, batch = trained["root"], trained["batch"]

    summary = cli_json("score", "batch.parquet", "--out", "scored.parquet", "--chunk-rows", "3000", cwd=root)

    assert summary["rows"] == len(batch) == 8640
    assert summary["chunks"] == 3 and summary["version"] == trained["version"]
    assert summary["engine"] == "local" and summary["rows_per_second"] > 0
    scored = pd.read_parquet(root / "scored.parquet")
    assert list(scored.columns) == [*batch.columns, *ADDED]
    pd.testing.assert_frame_equal(scored[list(batch.columns)], batch)
    assert (scored["_model_version"] == trained["version"]).all()
    expected = plain_mlflow(root, trained["version"], batch)
    np.testing.assert_allclose(scored["_prediction"], expected, rtol=0, atol=1e-12)


def test_csv_to_gzipped_csv_with_a_progress_line(trained: dict[str, Any]) -> None:
    root, batch = trained["root"], trained["batch"]

    done = run_cli(
        "score",
        "batch.csv",
        "--out",
        "out/scored.csv.gz",
        "--version",
        "1",
        "--chunk-rows",
        "5000",
        cwd=root,
    )

    assert f"scored {len(batch):,} rows of batch.csv with synthetic-loop version 1" in done.stdout
    assert "rows/s" in done.stdout
    scored = pd.read_csv(root / "out" / "scored.csv.gz")
    assert list(scored.columns) == [*batch.columns, *ADDED]
    expected = plain_mlflow(root, 1, pd.read_csv(root / "batch.csv"))
    np.testing.assert_allclose(scored["_prediction"], expected, rtol=0, atol=1e-12)


def test_scoring_settings_let_score_run_with_no_arguments(trained: dict[str, Any]) -> None:
    root = trained["root"]
    settings = "scoring:\n  input: batch.parquet\n  output: nightly/scored.parquet\n"
    (root / "with-scoring.yaml").write_text(
        PROJECT.format(
            estimator="sklearn.ensemble.HistGradientBoostingClassifier",
            params="{max_iter: 60, random_state: 0}",
        )
        + settings,
        encoding="utf-8",
    )

    summary = cli_json("score", "--project", "with-scoring.yaml", cwd=root)

    assert Path(summary["output"]) == root / "nightly" / "scored.parquet"
    assert summary["rows"] == len(trained["batch"])
    assert len(pd.read_parquet(root / "nightly" / "scored.parquet")) == len(trained["batch"])
    status = json.loads(run_cli("status", "--json", cwd=root).stdout)
    assert status["champion"]["version"] == trained["version"]  # scoring moves no alias


def test_a_bad_row_is_one_clear_line_and_leaves_no_output(trained: dict[str, Any]) -> None:
    root, batch = trained["root"], trained["batch"]
    bad = batch.astype({"x1": object})
    bad.loc[6001, "x1"] = "twelve"  # data row 6002, in the third chunk of 2500
    bad.to_csv(root / "bad.csv", index=False)

    done = run_cli(
        "score", "bad.csv", "--out", "bad-scored.csv", "--chunk-rows", "2500", cwd=root, check=False
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert "column 'x1' must hold numbers but holds text: 1 row(s) (rows 6002; e.g. 'twelve')" in message
    assert not list(root.glob("*bad-scored*"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--engine", "dask", "batch.csv", "--out", "x.csv"], "--engine 'dask': no such engine"),
        (["--master", "local[2]", "batch.csv", "--out", "x.csv"], "--master is Spark's"),
        ([], "nothing to score: pass the file"),
        (["batch.csv"], "pass --out OUTPUT"),
        (["batch.csv", "--out", "x.json"], "cannot tell the output's format"),
    ],
)
def test_usage_mistakes_are_one_line(trained: dict[str, Any], args: list[str], expected: str) -> None:
    done = run_cli("score", *args, cwd=trained["root"], check=False)

    assert done.returncode == 2, done  # command-line usage: the CLI library's exit code
    assert "Traceback" not in done.stderr
    assert expected in " ".join(done.stderr.split())
