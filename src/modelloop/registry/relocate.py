"""Rebase an embedded MLflow store (a sqlite file) whose folder was copied or moved.

MLflow records artifact locations as absolute URIs (an experiment's root, each run's and each
logged model's folder, each version's storage location). A copied home would go on reading,
and writing, the original's artifacts, and fail once the original is gone. This rewrites the
locations that lie under the old root onto the new one, in one transaction, with plain sqlite3
(no MLflow import: a move is handled before MLflow opens the store). A location outside the old
root (a remote artifact store, another folder) is left as it is.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelloop.errors import BackendError

#: Where MLflow (3.x, and the 2.x tables that exist) keeps an artifact location. A table or a
#: column an older schema lacks is skipped.
LOCATION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("workspaces", "default_artifact_root"),
    ("trace_tags", "value"),  # mlflow.artifactLocation of a trace
)

_BUSY_TIMEOUT_SECONDS = 30.0


def _spellings(root: Path) -> list[str]:
    """The ways a location under `root` may be written: its file URI (percent-encoded, as
    `Path.as_uri` and MLflow write it), the same unencoded, and the plain path."""
    return [root.as_uri(), f"file://{root}", str(root)]


def _connect(db_path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(db_path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackendError(f"{db_path}: cannot open the MLflow store: {exc}") from None


def _columns(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    present = []
    for table, column in LOCATION_COLUMNS:
        names = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
        if column in names:
            present.append((table, column))
    return present


def rebase_mlflow_store(db_path: Path, old_root: Path, new_root: Path) -> int:
    """Point every location in the sqlite store at `db_path` that lies under `old_root` (the
    folder itself or anything below it, as a file URI or a path) at the same place under
    `new_root`. Returns how many values changed; running it again changes nothing."""
    if not db_path.is_file():
        return 0
    # Each spelling of the old root becomes the same spelling of the new one; when two of the
    # old's are one (no character to encode), the first, MLflow's own, wins.
    pairs: dict[str, str] = {}
    for old, new in zip(_spellings(old_root), _spellings(new_root), strict=True):
        pairs.setdefault(old, new)
    conn = _connect(db_path)
    changed = 0
    try:
        conn.execute("BEGIN IMMEDIATE")  # one writer at a time, all or nothing
        for table, column in _columns(conn):
            for old, new in pairs.items():
                # Exact prefix comparison, not LIKE: a path may hold `_` or `%`.
                cursor = conn.execute(
                    f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                    f'WHERE "{column}" = ? OR substr("{column}", 1, ?) = ?',
                    (new, len(old) + 1, old, len(old) + 1, old + "/"),
                )
                changed += cursor.rowcount
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise BackendError(f"{db_path}: cannot rebase the MLflow store onto {new_root}: {exc}") from None
    finally:
        conn.close()
    return changed


def recorded_artifact_root(db_path: Path, experiment: str) -> Path | None:
    """The local folder the experiment's artifacts were set to live in, if it is a local one:
    how a home made before modelloop recorded its own place tells where it was."""
    if not db_path.is_file():
        return None
    conn = _connect(db_path)
    try:
        if ("experiments", "artifact_location") not in _columns(conn):
            return None  # a store MLflow never initialised: nothing was recorded
        row = conn.execute(
            "SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)
        ).fetchone()
    except sqlite3.Error as exc:
        raise BackendError(f"{db_path}: cannot read the MLflow store: {exc}") from None
    finally:
        conn.close()
    if row is None or not row[0]:
        return None
    location = str(row[0])
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and location.startswith("/"):
        return Path(location)
    return None  # a remote store: nothing to rebase
