"""`modelloop doctor`: is each backend reachable and writable, and what fails if not.

Every check is real but harmless: a temporary key written to and removed from the metadata DB's
state table, a small file written and deleted under the artifact root and the log storage, a
read of the MLflow tracking store (no experiment or run is created). Each is bounded in time: a
network backend is first reached with a short TCP connect, and a check that does not finish in
its budget is reported as not answering (its thread is left to end with the process).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from modelloop.backends import NETWORK_KINDS, Backend, BackendKind, scrub_secrets
from modelloop.errors import DataError, ModelloopError

if TYPE_CHECKING:
    import pandas as pd

    from modelloop.store import MetadataDB

#: What went wrong, as a person would say it.
Problem = Literal["cannot connect", "cannot write", "cannot read", "not found", "permission denied",
                  "no answer", "failed"]

#: How long a TCP connect to a network backend may take.
CONNECT_SECONDS = 3.0
#: How long one check may take in all (MLflow creates its SQLite store on first use: seconds).
CHECK_SECONDS = 20.0
#: Reading the data source reads it all; a big one takes a while.
DATA_SECONDS = 60.0

#: Ports a URL without one means; an s3:// URL names a bucket, not a host, so it is not here.
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "http": 80, "https": 443}


@dataclass(frozen=True)
class Check:
    """One check: `ok`, how long it took, and a detail (on failure: what, where and why)."""

    name: str
    ok: bool
    seconds: float
    detail: str
    problem: Problem | None = None
    kind: str | None = None
    location: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "seconds": round(self.seconds, 3),
                "kind": self.kind, "location": self.location, "problem": self.problem,
                "detail": self.detail}


class _Failed(Exception):
    def __init__(self, problem: Problem, reason: str) -> None:
        super().__init__(reason)
        self.problem = problem


def _problem_of(exc: BaseException) -> Problem:
    if isinstance(exc, _Failed):
        return exc.problem
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, ConnectionError | socket.gaierror):
        return "cannot connect"
    if isinstance(exc, TimeoutError):
        return "no answer"
    if isinstance(exc, OSError):
        return "cannot write"
    return "failed"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _bounded(action: Callable[[], str], seconds: float) -> tuple[str | None, BaseException | None]:
    """Run `action` in a daemon thread for at most `seconds`: (its detail, or what it raised)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["detail"] = action()
        except BaseException as exc:  # a doctor reports every failure, whatever its type
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="modelloop-doctor", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return None, _Failed("no answer", f"did not answer within {seconds:g} s")
    return outcome.get("detail"), outcome.get("error")


def _check(name: str, action: Callable[[], str], *, backend: Backend | None = None,
           seconds: float = CHECK_SECONDS, scrub: Callable[[str], str] = str) -> Check:
    started = time.perf_counter()
    detail, error = _bounded(action, seconds)
    took = time.perf_counter() - started
    kind = str(backend.kind) if backend else None
    location = backend.location if backend else None
    if error is None:
        return Check(name, True, took, scrub(detail or "ok"), kind=kind, location=location)
    problem = _problem_of(error)
    where = f" ({kind} at {location})" if backend else ""
    message = f"{name}{where}: {problem}: {_reason(error)}"
    return Check(name, False, took, scrub(message), problem, kind, location)


def _reach(url: str) -> None:
    """Open and close a TCP connection to the host a network URL names, within CONNECT_SECONDS."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower().split("+", 1)[0]
    host = parts.hostname
    if not host:
        return  # a socket path or a driver's own default: the driver will say
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    if port is None:
        return
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except TimeoutError:
        waited = f"{host}:{port} did not answer within {CONNECT_SECONDS:g} s"
        raise _Failed("cannot connect", waited) from None
    except OSError as exc:
        raise _Failed("cannot connect", f"{host}:{port}: {exc.strerror or exc}") from None


def _local_path(backend: Backend) -> Path:
    if backend.kind is not BackendKind.FILE:
        raise _Failed("failed", f"checking a {backend.kind} {backend.title} is not supported yet")
    parts = urlsplit(backend.url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else Path(backend.url)


def _write_probe(folder: Path) -> str:
    """Write, read back and delete a small file in `folder` (created if missing, as its
    backend would on first use)."""
    if folder.exists() and not folder.is_dir():
        raise _Failed("cannot write", f"{folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _Failed("cannot write", f"cannot create {folder}: a file stands in its path") from None
    probe = folder / f".modelloop-doctor-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"modelloop doctor\n")
        if probe.read_bytes() != b"modelloop doctor\n":
            raise _Failed("cannot write", f"{probe} did not read back what was written")
    finally:
        probe.unlink(missing_ok=True)
    return f"wrote and deleted a file in {folder}"


def _tracking(backend: Backend, experiment: str) -> str:
    if backend.kind in NETWORK_KINDS:
        _reach(backend.url)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=backend.url, registry_uri=backend.url)
    client.search_experiments(max_results=1)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return f"answers; experiment {experiment!r} not created yet (the first training creates it)"
    return f"answers; experiment {experiment!r} found"


def _migrations(backend: Backend) -> str:
    from modelloop.store.db import HEAD_REVISION, schema_revision

    if backend.kind in NETWORK_KINDS:
        _reach(backend.url)
    found = schema_revision(backend.url)
    if found is None:
        return f"new database: created at revision {HEAD_REVISION} on first use"
    if found == HEAD_REVISION:
        return f"at revision {found} (head)"
    if found.isdigit() and int(found) < int(HEAD_REVISION):
        raise _Failed("failed", f"at revision {found}, behind head {HEAD_REVISION}: any modelloop "
                                "command migrates it (then run `modelloop doctor` again)")
    raise _Failed("failed", f"at revision {found}, which this modelloop (head {HEAD_REVISION}) does "
                            "not know: a newer modelloop migrated it; upgrade modelloop")


def _metadata(backend: Backend, db: MetadataDB) -> str:
    if backend.kind in NETWORK_KINDS:
        _reach(backend.url)
    key = f"doctor.probe.{uuid.uuid4().hex}"
    try:
        db.set_state(key, {"pid": os.getpid()})
        if db.get_state(key) != {"pid": os.getpid()}:
            raise _Failed("cannot write", "a value written to the state table did not read back")
    finally:
        with contextlib.suppress(Exception):  # if the write failed, that is the error to report
            db.delete_state(key)
    return "wrote, read back and deleted a temporary key in the state table"


def _data(read: Callable[[], pd.DataFrame], timestamp: str) -> str:
    try:
        frame = read()
    except DataError as exc:
        raise _Failed("cannot read", str(exc).removeprefix("data.source: ")) from None
    if frame.empty:
        raise _Failed("not found", "it holds no rows")
    return f"{len(frame):,} rows, the latest at {frame[timestamp].max()}"


def project_file_check(project_file: Path, error: ModelloopError | None, seconds: float) -> Check:
    """The check of the project file itself: it parses and the project opens (the caller
    opened it and passes what it raised, if anything)."""
    location = str(project_file)
    if error is None:
        return Check("project file", True, seconds, "parses", kind="file", location=location)
    return Check("project file", False, seconds, f"project file: {error}", "failed", "file", location)


def diagnose(
    backends: list[Backend],
    *,
    experiment: str,
    db: MetadataDB,
    read_data: Callable[[], pd.DataFrame],
    timestamp: str,
) -> list[Check]:
    """Check each backend in `backends` (as `Project.backend_list` gives them): the data source,
    the tracking store, the artifact store, the metadata DB's migrations and writes, the
    prediction log storage. In-process (`memory`) backends have nothing to reach: skipped."""
    listed = {backend.role: backend for backend in backends}

    def scrub(text: str) -> str:
        return scrub_secrets(text, backends)

    def check(name: str, action: Callable[[], str], backend: Backend,
              seconds: float = CHECK_SECONDS) -> Check:
        return _check(name, action, backend=backend, seconds=seconds, scrub=scrub)

    tracking, artifacts = listed["tracking"], listed["artifacts"]
    metadata, logs = listed["metadata"], listed["logs"]
    checks = [check("data source", lambda: _data(read_data, timestamp), listed["data"], DATA_SECONDS)]
    if tracking.kind is not BackendKind.MEMORY:
        checks.append(check("tracking store", lambda: _tracking(tracking, experiment), tracking))
    if artifacts.kind is not BackendKind.MEMORY:
        checks.append(check("artifact store", lambda: _write_probe(_local_path(artifacts)), artifacts))
    checks.append(check("migrations", lambda: _migrations(metadata), metadata))
    checks.append(check("metadata DB", lambda: _metadata(metadata, db), metadata))
    if logs.kind is not BackendKind.MEMORY:
        checks.append(check("prediction log storage",
                            lambda: _write_probe(_local_path(logs) / "predictions" / experiment), logs))
    return checks
