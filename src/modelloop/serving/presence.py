"""Which servers are running, and what each one serves: for `modelloop status`.

A running server keeps one small JSON file under `$MODELLOOP_HOME/servers/<model>/`, rewritten
(atomically) at start, at every swap and at every check of the champion alias, and removed when
it stops. A file whose process is gone (on this machine) or whose heartbeat is older than a
minute (a server elsewhere sharing the home) is not a running server; status ignores it, and
removes it when the process is known dead.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

#: A heartbeat older than this means the server is gone (when its process cannot be checked).
STALE_SECONDS = 60.0


def _folder(home: Path, name: str) -> Path:
    return home / "servers" / name


def announce(home: Path, name: str, facts: dict[str, Any]) -> Path:
    """Write (or rewrite) this process's file; `facts` holds url, version, swaps, ..."""
    folder = _folder(home, name)
    folder.mkdir(parents=True, exist_ok=True)
    host, pid = socket.gethostname(), os.getpid()
    path = folder / f"{host}-{pid}.json"
    body = {**facts, "host": host, "pid": pid, "heartbeat": time.time()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def withdraw(path: Path) -> None:
    path.unlink(missing_ok=True)


def running_servers(home: Path, name: str) -> list[dict[str, Any]]:
    """The servers of model `name` that are running now, oldest first."""
    folder = _folder(home, name)
    if not folder.is_dir():
        return []
    here = socket.gethostname()
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            facts = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being rewritten, or damaged: not a server we can describe
        if facts.get("host") == here:
            if not _alive(int(facts.get("pid", -1))):
                path.unlink(missing_ok=True)
                continue
        elif time.time() - float(facts.get("heartbeat", 0)) > STALE_SECONDS:
            continue
        found.append(facts)
    return sorted(found, key=lambda f: float(f.get("started_at", 0)))


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True
