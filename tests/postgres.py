"""A real PostgreSQL server for the tests that run on one.

`.ci/run` starts a throwaway cluster with `.ci/postgres` and exports its URLs. In CI (`CI` or
`MODELLOOP_CI` set) a missing URL fails the test, so the PostgreSQL checks never vanish quietly;
run by hand without one, those tests skip and say how to start a server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

#: modelloop's own state: a SQLAlchemy URL whose database the tests may create databases beside.
POSTGRES_URL = "MODELLOOP_TEST_POSTGRES_URL"
#: MLflow's backend store on the same server (MLflow's spelling of the URL).
POSTGRES_MLFLOW_URL = "MODELLOOP_TEST_POSTGRES_MLFLOW_URL"

BACKENDS = ("sqlite", "postgresql")


def server_url(variable: str = POSTGRES_URL) -> str:
    """The URL in `variable`; fails in CI and skips elsewhere when it is not set."""
    url = os.environ.get(variable)
    if url:
        return url
    if os.environ.get("CI") or os.environ.get("MODELLOOP_CI"):
        pytest.fail(
            f"{variable} is not set, but this is CI: .ci/run starts PostgreSQL with "
            "`.ci/postgres start DIR` and exports it; without it the PostgreSQL checks would not run",
            pytrace=False,
        )
    pytest.skip(f"no PostgreSQL server: set {variable} (`eval \"$(.ci/postgres start /tmp/pg)\"`)")


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new, empty database on the server `url` names (same driver), dropped afterwards even if
    connections to it are still open."""
    base = sa.make_url(url)
    name = f"modelloop_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def metadata_url(backend: str, sqlite_path: Path) -> Iterator[str]:
    """For a parametrized fixture: a SQLite file at `sqlite_path`, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{sqlite_path}"
        return
    with fresh_database(server_url()) as url:
        yield url


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()
