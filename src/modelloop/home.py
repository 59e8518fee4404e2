"""Where the state folder lives, and what to do when it was copied or moved.

The home records the absolute path it was made at in `home.json`. Opened from another path (a
copied project folder, a renamed one, another machine), it is a moved home: the embedded
stores' records of their own files still name the old place, so they are rebased onto the new
one before anything reads them, and the move is recorded (`status` shows the last one). Only
the embedded defaults are rebased: a tracking server or database the user names lives
elsewhere and knows nothing of this folder.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelloop.files import write_atomically
from modelloop.registry.relocate import rebase_mlflow_store, recorded_artifact_root
from modelloop.store.relocate import rebase_metadata_db

RECORD = "home.json"
#: Moves kept in the record, newest last.
_KEPT_MOVES = 20


@dataclass(frozen=True)
class Move:
    """A home opened at `to` that was last at `previous`; `rebased` counts the values changed."""

    previous: Path
    to: Path
    at: datetime
    rebased: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"from": str(self.previous), "to": str(self.to), "at": self.at.isoformat(),
                "rebased": dict(self.rebased)}

    def describe(self) -> str:
        return (
            f"this state folder was at {self.previous} and is now at {self.to}: "
            "its MLflow store and records now point at the files here"
        )


def read_record(home: Path) -> dict[str, Any] | None:
    """The home's record, or None when it has none (a home made before records, or a new one)."""
    path = home / RECORD
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent, or damaged by hand: the MLflow store tells where it was
    return found if isinstance(found, dict) and isinstance(found.get("path"), str) else None


def last_move(home: Path) -> dict[str, Any] | None:
    """The last move recorded, for `status`."""
    record = read_record(home) or {}
    moves = record.get("moves") or []
    return moves[-1] if moves and isinstance(moves[-1], dict) else None


def _write(home: Path, record: dict[str, Any]) -> None:
    write_atomically(home / RECORD, json.dumps(record, indent=2) + "\n", what="the state folder's record")


def settle_home(
    home: Path,
    *,
    experiment: str,
    tracking_db: Path | None,
    metadata_db: Path | None,
    servers: Path | None = None,
) -> Move | None:
    """Make sure the home's stores name this folder: return the move when it was elsewhere.

    `tracking_db` and `metadata_db` are the embedded sqlite files to rebase (None when the user
    named another store); `servers` is the folder of the presence files, whose servers on this
    machine belong to the old place and are forgotten. A home without a record takes the old
    place from where its MLflow experiment's artifacts were set to live.
    """
    record = read_record(home)
    if record is not None:
        previous: Path | None = Path(record["path"])
    elif tracking_db is not None and (root := recorded_artifact_root(tracking_db, experiment)):
        previous = root.parent if root.name == "mlartifacts" else None
    else:
        previous = None
    now = datetime.now(UTC)
    if previous is None or previous == home:
        if record is None:
            _write(home, {"path": str(home), "created_at": now.isoformat(), "moves": []})
        return None
    rebased = {}
    if tracking_db is not None:
        rebased["mlflow"] = rebase_mlflow_store(tracking_db, previous, home)
    if metadata_db is not None:
        rebased["metadata"] = rebase_metadata_db(metadata_db, previous, home)
    if servers is not None:
        rebased["servers"] = _forget_local_servers(servers)
    move = Move(previous=previous, to=home, at=now, rebased=rebased)
    moves = [*(record or {}).get("moves", []), move.to_dict()][-_KEPT_MOVES:]
    created = (record or {}).get("created_at")
    _write(home, {"path": str(home), "created_at": created, "moves": moves})
    return move


def _forget_local_servers(servers: Path) -> int:
    """Remove the presence files of servers on this machine: they serve the old place. A server
    elsewhere is left to its heartbeat, which goes stale in a minute if it is not here."""
    here = socket.gethostname()
    removed = 0
    for path in servers.glob("*/*.json"):
        try:
            facts = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(facts, dict) and facts.get("host") == here:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
