"""Rebase the embedded metadata database (a sqlite file) of a copied or moved home.

modelloop's own records name files by absolute path only inside their JSON payloads (where a
monitoring report was written: the report's history links and `status` show them). Reading
them is harmless, but a copy should point at its own reports, so the paths under the old home
are rewritten, in one transaction. The match is on the JSON-encoded path behind its opening
quote, so only a value that starts with the old home changes.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from modelloop.errors import BackendError

_BUSY_TIMEOUT_SECONDS = 30.0


def _quoted(path: Path) -> str:
    """`"<path>` as json.dumps writes the start of a string holding `path`."""
    return json.dumps(str(path))[:-1]


def rebase_metadata_db(db_path: Path, old_root: Path, new_root: Path) -> int:
    """Rewrite the paths under `old_root` found in the text columns of modelloop's tables in
    the sqlite database at `db_path` onto `new_root`. Returns how many values changed."""
    if not db_path.is_file():
        return 0
    old, new = _quoted(old_root) + "/", _quoted(new_root) + "/"
    changed = 0
    try:
        conn = sqlite3.connect(db_path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackendError(f"{db_path}: cannot open the metadata database: {exc}") from None
    try:
        conn.execute("BEGIN IMMEDIATE")
        tables = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if str(row[0]).startswith("modelloop_")
        ]
        for table in tables:
            for column in conn.execute(f'PRAGMA table_info("{table}")').fetchall():
                name, kind = column[1], str(column[2]).upper()
                if "TEXT" not in kind and "CHAR" not in kind and "JSON" not in kind:
                    continue
                cursor = conn.execute(
                    f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) WHERE instr("{name}", ?) > 0',
                    (old, new, old),
                )
                changed += cursor.rowcount
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise BackendError(f"{db_path}: cannot rebase the metadata database onto {new_root}: {exc}") from None
    finally:
        conn.close()
    return changed
