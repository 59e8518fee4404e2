"""`Project.score`: the `scoring` settings, the served model, the engine, and the run ledger."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.config import parse_config
from modelloop.errors import DataError, ModelloopError
from modelloop.project import Project
from modelloop.store import MetadataDB
from tests.conftest import RAW_CONFIG


def scoring_project(served_project: Project, directory: Path, scoring: dict[str, Any]) -> Project:
    """The served project's champion, with `scoring` settings and its own run ledger."""
    raw = copy.deepcopy(RAW_CONFIG)
    raw["scoring"] = scoring
    return Project(
        parse_config(raw, "modelloop.yaml"),
        project_dir=directory,
        home=directory / ".modelloop",
        registry=served_project.registry,
        db=MetadataDB(f"sqlite:///{directory / 'modelloop.db'}", model="flights"),
        logs=served_project.logs,
        source=served_project.source,
    )


def test_scoring_settings_are_relative_to_the_project_file(
    served_project: Project, flights: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = scoring_project(
        served_project, tmp_path, {"input": "batch/in.parquet", "output": "scored/out.csv"}
    )
    (tmp_path / "batch").mkdir()
    flights.to_parquet(tmp_path / "batch" / "in.parquet", index=False)
    monkeypatch.chdir(tmp_path / "batch")  # not the project's folder

    summary = project.score(chunk_rows=1000)

    assert summary.input == tmp_path / "batch" / "in.parquet"
    assert summary.output == tmp_path / "scored" / "out.csv"
    assert (summary.rows, summary.chunks, summary.version, summary.engine) == (3000, 3, 1, "local")
    scored = pd.read_csv(tmp_path / "scored" / "out.csv")
    expected = project.load_served_model().predict(flights)
    np.testing.assert_allclose(scored["_prediction"], expected, rtol=0, atol=1e-12)
    run = project.db.runs(limit=1)[0]
    assert (run["kind"], run["status"], run["trigger"]) == ("score", "succeeded", "manual")
    assert run["detail"]["rows"] == 3000 and run["detail"]["version"] == 1


def test_arguments_win_over_the_settings(
    served_project: Project, flights: pd.DataFrame, tmp_path: Path
) -> None:
    project = scoring_project(
        served_project, tmp_path, {"input": "missing.parquet", "output": "never.parquet"}
    )
    source = tmp_path / "given.csv"
    flights.head(100).to_csv(source, index=False)

    summary = project.score(source, tmp_path / "given-out.parquet", version=1)

    assert summary.rows == 100 and (tmp_path / "given-out.parquet").is_file()
    assert not (tmp_path / "never.parquet").exists()


def test_nothing_to_score_is_a_clear_error(served_project: Project, tmp_path: Path) -> None:
    project = scoring_project(served_project, tmp_path, {})
    with pytest.raises(ModelloopError, match=r"nothing to score: pass the file .* scoring\.input"):
        project.score()
    with pytest.raises(ModelloopError, match=r"no output for .*in\.csv: pass --out OUTPUT"):
        project.score(tmp_path / "in.csv")
    assert project.db.runs() == []


def test_a_failed_job_is_recorded_with_its_reason(
    served_project: Project, flights: pd.DataFrame, tmp_path: Path
) -> None:
    project = scoring_project(served_project, tmp_path, {})
    source = tmp_path / "in.parquet"
    flights.drop(columns=["carrier"]).to_parquet(source, index=False)

    with pytest.raises(DataError, match="'carrier' is missing"):
        project.score(source, tmp_path / "out.parquet")

    run = project.db.runs(limit=1)[0]
    assert (run["kind"], run["status"]) == ("score", "failed")
    assert "'carrier' is missing" in run["error"]
    assert run["params"]["input"] == str(source) and run["params"]["engine"] == "local"
    assert not (tmp_path / "out.parquet").exists()


def test_unknown_engine_fails_before_any_work(served_project: Project, tmp_path: Path) -> None:
    project = scoring_project(served_project, tmp_path, {})
    with pytest.raises(ModelloopError, match=r"--engine 'dask': no such engine"):
        project.score(tmp_path / "in.csv", tmp_path / "out.csv", engine="dask")
    assert project.db.runs() == []
