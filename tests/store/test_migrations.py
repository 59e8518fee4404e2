"""modelloop.db is migrated with alembic: a new database reaches the newest revision, a database
made before migrations existed keeps its rows and gains the new tables, and two processes that
first connect at the same moment both succeed."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelloop.store import MetadataDB
from modelloop.store.db import schema_revision
from tests.postgres import fresh_database, server_url, table_names

HEAD = "0004"


def _revision(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_a_new_database_reaches_the_newest_revision(tmp_path: Path) -> None:
    db = MetadataDB(f"sqlite:///{tmp_path / 'm.db'}", model="m")
    db.record_alias("champion", 1, from_version=None, action="promoted", by="gate", reason="r")
    assert _revision(tmp_path / "m.db") == HEAD
    assert db.alias_history()[0]["version"] == 1


def test_a_database_from_before_migrations_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:  # the version-zero schema, created directly
        connection.execute(sa.text(
            "CREATE TABLE modelloop_decisions (id INTEGER PRIMARY KEY, model VARCHAR(255) NOT NULL,"
            " version INTEGER NOT NULL, outcome VARCHAR(64) NOT NULL, reasons TEXT NOT NULL,"
            " metrics TEXT NOT NULL, as_of DATETIME, created_at DATETIME NOT NULL)"))
        connection.execute(sa.text(
            "CREATE TABLE modelloop_runs (id INTEGER PRIMARY KEY, model VARCHAR(255) NOT NULL,"
            " kind VARCHAR(64) NOT NULL, as_of DATETIME, \"trigger\" TEXT NOT NULL,"
            " status VARCHAR(64) NOT NULL, detail TEXT, started_at DATETIME NOT NULL,"
            " finished_at DATETIME, created_at DATETIME NOT NULL)"))
        for table in ("modelloop_monitoring", "modelloop_alerts", "modelloop_triggers"):
            connection.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)"))
        connection.execute(sa.text(
            "CREATE TABLE modelloop_state (model VARCHAR(255), key VARCHAR(255), value TEXT,"
            " updated_at DATETIME, PRIMARY KEY (model, key))"))
        connection.execute(sa.text(
            "INSERT INTO modelloop_decisions VALUES (1, 'm', 3, 'promoted', '[\"ok\"]', '{}',"
            " NULL, '2024-01-01 00:00:00')"))
    engine.dispose()
    db = MetadataDB(f"sqlite:///{path}", model="m")
    assert [d["version"] for d in db.decisions()] == [3]  # nothing lost
    db.record_alias("champion", 3, from_version=None, action="found", by="m", reason="r")
    assert _revision(path) == HEAD


def _first_connect(url: str) -> int:
    return len(MetadataDB(url, model="m").decisions())


def test_two_processes_migrating_at_once_both_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_first_connect, [url] * 4) == [0, 0, 0, 0]
    assert _revision(tmp_path / "race.db") == HEAD


def test_the_head_revision_the_fast_path_checks_is_alembics(tmp_path: Path) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from modelloop.store.db import HEAD_REVISION

    config = Config()
    config.set_main_option("script_location", "modelloop.store:migrations")
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION == HEAD


def test_a_database_at_0002_gains_the_run_ledger_and_keeps_its_runs(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    path = tmp_path / "v2.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", "modelloop.store:migrations")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        connection.execute(sa.text(
            "INSERT INTO modelloop_runs (model, kind, as_of, \"trigger\", status, detail, started_at,"
            " finished_at, created_at) VALUES ('m', 'train', NULL, 'manual', 'succeeded', '{}',"
            " '2026-01-01 00:00:00', '2026-01-01 00:01:00', '2026-01-01 00:00:00')"))
    db = MetadataDB(f"sqlite:///{path}", model="m")
    [old] = db.runs()
    assert old["status"] == "succeeded" and old["origin"] == "cli" and old["attempt"] == 1
    assert _revision(path) == HEAD
    assert db.lease("train") is None  # the new table is there


def _declared_tables() -> set[str]:
    from modelloop.store.db import _metadata

    return set(_metadata.tables)


@pytest.fixture
def postgres() -> Iterator[str]:
    with fresh_database(server_url()) as url:
        yield url


def test_a_new_postgresql_database_gets_every_table_from_the_migrations(postgres: str) -> None:
    assert schema_revision(postgres) is None
    db = MetadataDB(postgres, model="m")
    db.record_alias("champion", 1, from_version=None, action="promoted", by="gate", reason="r")
    assert table_names(postgres) == _declared_tables() | {"alembic_version"}
    assert schema_revision(postgres) == HEAD
    assert db.alias_history()[0]["version"] == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migrated_schema_is_the_one_the_code_declares(backend: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from modelloop.store.db import _metadata

    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite"
               else stack.enter_context(fresh_database(server_url())))
        MetadataDB(url, model="m").runs()
        engine = sa.create_engine(url)
        stack.callback(engine.dispose)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), _metadata)
    assert differences == []


def test_two_processes_migrating_one_postgresql_database_at_once_both_succeed(postgres: str) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_first_connect, [postgres] * 4) == [0, 0, 0, 0]
    assert schema_revision(postgres) == HEAD
