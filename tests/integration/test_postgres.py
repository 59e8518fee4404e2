"""A small project trained, served and monitored through the real CLI with both of its databases on
a real PostgreSQL server: modelloop's state in one database (MODELLOOP_DB_URL), MLflow's tracking
and registry in another (MODELLOOP_TRACKING_URI), and no SQLite file anywhere in the home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelloop.store.db import HEAD_REVISION, schema_revision
from tests.integration.conftest import ServerProcess, cli_json
from tests.integration.synthetic import day, make_frame, rows_between, split_body, write_project
from tests.postgres import POSTGRES_MLFLOW_URL, fresh_database, server_url, table_names

pytestmark = pytest.mark.integration

FEATURES = ["x1", "x2", "x3", "seg"]
#: What MLflow's own migrations make, in part: its runs, its registry, its alembic revision.
MLFLOW_TABLES = {"experiments", "runs", "metrics", "registered_models", "model_versions",
                 "registered_model_aliases", "alembic_version"}


@pytest.fixture
def databases(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """Two fresh databases on the test server, named to the CLI the way a user names them."""
    with fresh_database(server_url()) as state, \
            fresh_database(server_url(POSTGRES_MLFLOW_URL)) as tracking:
        monkeypatch.setenv("MODELLOOP_DB_URL", state)
        monkeypatch.setenv("MODELLOOP_TRACKING_URI", tracking)
        yield state, tracking


def _sqlite_files(root: Path) -> list[Path]:
    """Files that are SQLite databases, by name or by their first bytes."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix in {".db", ".sqlite", ".sqlite3", ".db-wal", ".db-shm"}:
            found.append(path)
            continue
        with path.open("rb") as handle:
            if handle.read(16) == b"SQLite format 3\x00":
                found.append(path)
    return found


def test_a_project_on_postgresql_keeps_every_table_there_and_no_sqlite_file(
    tmp_path: Path, databases: tuple[str, str]
) -> None:
    state, tracking = databases
    frame = make_frame(days=50)
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    write_project(tmp_path, estimator="sklearn.linear_model.LogisticRegression", params="{C: 1.0}")

    trained = cli_json("train", "--as-of", day(30).isoformat(), cwd=tmp_path)
    assert trained["version"] == 1 and trained["decision"]["outcome"] == "promoted"

    server = ServerProcess(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for d in range(30, 40):
                rows = rows_between(frame, d, d)[["row_id", "event_time", *FEATURES]]
                answer = client.post(
                    "/invocations", content=split_body(rows), headers={"Content-Type": "application/json"}
                )
                assert answer.status_code == 200, answer.text
                labels = rows_between(frame, d, d)[["row_id", "label"]]
                client.post("/labels", json=labels.to_dict(orient="records")).raise_for_status()
    finally:
        server.stop()
    monitored = cli_json("monitor", "--as-of", day(40).isoformat(), cwd=tmp_path)
    assert monitored["n_labelled"] > 0

    status = cli_json("status", cwd=tmp_path)
    assert status["champion"]["version"] == 1
    assert status["last_monitoring"] is not None

    from modelloop.store.db import _metadata

    assert table_names(state) == set(_metadata.tables) | {"alembic_version"}
    assert schema_revision(state) == HEAD_REVISION
    mlflow_tables = table_names(tracking)
    assert mlflow_tables >= MLFLOW_TABLES, sorted(MLFLOW_TABLES - mlflow_tables)
    assert not mlflow_tables & set(_metadata.tables)
    assert _sqlite_files(tmp_path) == []
