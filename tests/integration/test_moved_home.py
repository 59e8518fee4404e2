"""A project folder copied elsewhere keeps working from its own files: with the original deleted
it serves, monitors and retrains; with the original kept, the copy changes none of its files."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.integration.conftest import ServerProcess, cli_json, run_cli
from tests.integration.synthetic import day, make_frame, rows_between, write_project

pytestmark = pytest.mark.integration

FEATURES = ["row_id", "event_time", "x1", "x2", "x3", "seg"]
NAME = "synthetic-loop"


def _serve_days(root: Path, frame: pd.DataFrame, first: int, last: int) -> list[int]:
    """Score each day through a real server and send the day's labels; the versions that answered."""
    server = ServerProcess(root)
    versions = []
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for d in range(first, last + 1):
                rows = rows_between(frame, d, d)
                body = rows[FEATURES].to_json(orient="split", date_format="iso", index=False)
                answer = client.post(
                    "/invocations",
                    content=b'{"dataframe_split": ' + body.encode() + b"}",
                    headers={"Content-Type": "application/json"},
                )
                assert answer.status_code == 200, answer.text
                assert len(answer.json()["predictions"]) == len(rows)
                versions.append(int(answer.headers["X-Model-Version"]))
                labels = rows[["row_id", "label"]].to_dict(orient="records")
                client.post("/labels", json=labels).raise_for_status()
    finally:
        server.stop()
    return versions


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under `root`: its content hash and modification time."""
    return {
        str(path.relative_to(root)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _mlflow_locations(home: Path) -> list[str]:
    with sqlite3.connect(home / "mlflow.db") as conn:
        return [
            str(row[0])
            for query in (
                "SELECT artifact_location FROM experiments WHERE name != 'Default'",
                "SELECT artifact_uri FROM runs",
                "SELECT artifact_location FROM logged_models",
                "SELECT storage_location FROM model_versions",
            )
            for row in conn.execute(query)
        ]


def _run_folder(home: Path, version: int) -> Path:
    """Where MLflow says version `version`'s run keeps its artifacts, as a local folder."""
    from urllib.parse import unquote, urlparse

    with sqlite3.connect(home / "mlflow.db") as conn:
        (uri,) = conn.execute(
            "SELECT r.artifact_uri FROM runs r JOIN model_versions v ON v.run_id = r.run_uuid"
            " WHERE v.name = ? AND v.version = ?",
            (NAME, version),
        ).fetchone()
    return Path(unquote(urlparse(uri).path))


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("moved")
    frame = make_frame(days=40)
    original = root / "original"
    original.mkdir()
    frame.to_parquet(original / "data.parquet", index=False)
    write_project(original)
    out: dict[str, Any] = {"root": root, "frame": frame}

    # A finished project: a champion, served rows with their labels, a monitoring run.
    cli_json("train", "--as-of", day(25).isoformat(), cwd=original)
    _serve_days(original, frame, 25, 29)
    cli_json("monitor", "--as-of", day(30).isoformat(), cwd=original)

    # A copy beside the original, which stays: the copy must not touch it.
    kept = root / "kept-copy"
    shutil.copytree(original, kept)
    before = _snapshot(original)
    out["kept_monitor"] = cli_json("monitor", "--as-of", day(31).isoformat(), cwd=kept)
    out["kept_train"] = cli_json("train", "--as-of", day(31).isoformat(), cwd=kept)
    out["kept_changes"] = {
        name for name, facts in _snapshot(original).items() if before.get(name) != facts
    } | (set(before) - set(_snapshot(original)))
    out["kept"] = kept

    # A copy elsewhere, and the original deleted.
    moved = root / "elsewhere" / "moved copy"
    shutil.copytree(original, moved)
    shutil.rmtree(original)
    first = run_cli("status", "--json", cwd=moved)
    out["first_status"] = first
    out["second_status"] = run_cli("status", "--json", cwd=moved)
    out["served_versions"] = _serve_days(moved, frame, 30, 33)
    out["moved_monitor"] = cli_json("monitor", "--as-of", day(34).isoformat(), cwd=moved)
    out["moved_train"] = cli_json("train", "--as-of", day(34).isoformat(), cwd=moved)
    out["moved"] = moved
    out["original"] = original
    yield out


def test_the_copy_names_the_champion_and_says_once_that_it_moved(story: dict[str, Any]) -> None:
    import json

    status = json.loads(story["first_status"].stdout)
    assert status["champion"]["version"] == 1
    home = story["moved"] / ".modelloop"
    assert status["home"] == str(home)
    assert status["moved"]["from"] == str(story["original"] / ".modelloop")
    assert status["moved"]["to"] == str(home)
    assert "was at" in story["first_status"].stderr and str(story["original"]) in story["first_status"].stderr
    assert "was at" not in story["second_status"].stderr


def test_the_copy_serves_monitors_and_retrains_from_its_own_files(story: dict[str, Any]) -> None:
    moved, home = story["moved"], story["moved"] / ".modelloop"
    assert not story["original"].exists()
    assert story["served_versions"] == [1, 1, 1, 1]
    monitor = story["moved_monitor"]
    assert monitor["n_rows"] > 0 and monitor["n_labelled"] > 0
    assert Path(monitor["report_html"]).is_relative_to(moved) and Path(monitor["report_html"]).is_file()
    version = story["moved_train"]["version"]
    assert version == 2
    run_folder = _run_folder(home, version)
    assert run_folder.is_relative_to(home / "mlartifacts")
    assert (run_folder / "contract.json").is_file()
    locations = _mlflow_locations(home)
    assert locations and all(
        location.startswith((home / "mlartifacts").as_uri()) for location in locations
    ), locations
    # The gate judged the new version against the champion: both loaded from the copy.
    assert story["moved_train"]["decision"] is not None


def test_a_copy_beside_the_original_changes_none_of_its_files(story: dict[str, Any]) -> None:
    assert story["kept_changes"] == set()
    kept_home = story["kept"] / ".modelloop"
    assert story["kept_train"]["version"] == 2
    assert _run_folder(kept_home, 2).is_relative_to(kept_home)
    assert Path(story["kept_monitor"]["report_html"]).is_relative_to(story["kept"])
