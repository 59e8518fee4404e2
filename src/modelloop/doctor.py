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


#: MLflow's error codes for a tracking server that refuses the caller (HTTP 401 and 403).
_DENIED = frozenset({"UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED", "PERMISSION_DENIED"})


def _problem_of(exc: BaseException) -> Problem:
    if isinstance(exc, _Failed):
        return exc.problem
    status = getattr(getattr(exc, "response", None), "status_code", None)  # an HTTP answer
    if getattr(exc, "error_code", None) in _DENIED or status in (401, 403):
        return "permission denied"
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


def _storage_probe(backend: Backend, *folders: str) -> str:
    """Write, read back and delete a small file in `folders` under the backend: a local folder or
    an s3:// location."""
    if backend.kind is BackendKind.S3:
        return _s3_probe(backend.url, *folders)
    return _write_probe(_local_path(backend).joinpath(*folders))


#: What the doctor calls each trouble object storage reports.
_S3_PROBLEMS: dict[str, Problem] = {"bucket not found": "not found", "access denied": "permission denied",
                                    "cannot connect": "cannot connect", "failed": "cannot write"}


def _s3_probe(url: str, *folders: str) -> str:
    """The same probe on object storage, through pyarrow's S3 client (as the logs use it)."""
    from modelloop.store.s3 import S3Location, StorageError

    location = S3Location(url).child(*folders)
    name = f".modelloop-doctor-{uuid.uuid4().hex}"
    try:
        location.check_bucket()
        location.put_bytes(name, b"modelloop doctor\n")
        try:
            if location.read_bytes(name) != b"modelloop doctor\n":
                raise _Failed("cannot write", f"{location.url_of(name)} did not read back what was written")
        finally:
            location.delete(name)
    except StorageError as exc:
        raise _Failed(_S3_PROBLEMS[exc.trouble], str(exc)) from None
    except FileNotFoundError:
        raise _Failed("cannot read", f"{location.url_of(name)} was written but cannot be read") from None
    return f"wrote, read back and deleted an object in {location.url}"


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
    from mlflow.exceptions import MlflowException

    from modelloop.registry.mlflow import describe_failure, use_client_defaults

    use_client_defaults()  # a server that answers 503 says so in seconds, not minutes
    client = MlflowClient(tracking_uri=backend.url, registry_uri=backend.url)
    try:
        client.search_experiments(max_results=1)
        found = client.get_experiment_by_name(experiment)
    except MlflowException as exc:
        raise _Failed(_problem_of(exc), describe_failure(exc)) from None
    if found is None:
        return f"answers; experiment {experiment!r} not created yet (the first training creates it)"
    return f"answers; experiment {experiment!r} found"


_STEP_PROBLEMS: dict[str, Problem] = {"write": "cannot write", "read": "cannot read", "delete": "failed"}


def _server_artifacts(tracking: Backend, experiment: str) -> str:
    """A tracking server's artifact store, the way training reaches it: a small file written
    under the experiment's artifact location (through the server's proxy, `mlflow-artifacts:/`,
    or straight to the store it names, such as s3://...), read back and deleted. Before the first
    training there is no experiment yet: the server's proxy root is checked, where a new
    experiment's artifacts go when the server serves them (`--serve-artifacts`, its default)."""
    import tempfile

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from modelloop.registry.mlflow import describe_failure, use_client_defaults

    _reach(tracking.url)
    use_client_defaults()
    client = MlflowClient(tracking_uri=tracking.url, registry_uri=tracking.url)
    try:
        found = client.get_experiment_by_name(experiment)
    except MlflowException as exc:
        reason = f"cannot read experiment {experiment!r}: {describe_failure(exc)}"
        raise _Failed(_problem_of(exc), reason) from None
    root = found.artifact_location if found is not None else "mlflow-artifacts:/"
    where = f"{root} (experiment {experiment!r})" if found is not None else (
        f"{root} (the server's proxy: experiment {experiment!r} is not created yet)")
    repository: Any = get_artifact_repository(root, tracking_uri=tracking.url)  # MLflow: untyped
    folder = f".modelloop-doctor-{uuid.uuid4().hex}"
    step = "write"
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.txt"
        probe.write_bytes(b"modelloop doctor\n")
        try:
            repository.log_artifact(str(probe), folder)
            step = "read"
            back = Path(repository.download_artifacts(f"{folder}/probe.txt", dst_path=tmp))
            if back.read_bytes() != b"modelloop doctor\n":
                raise _Failed("cannot read", f"a file written to {where} did not read back")
            step = "delete"
            repository.delete_artifacts(folder)
        except (MlflowException, OSError) as exc:
            problem = _problem_of(exc)
            if problem in ("cannot write", "failed"):  # which: the step that failed says
                problem = _STEP_PROBLEMS[step]
            raise _Failed(problem, f"cannot {step} a file in {where}: {describe_failure(exc)}") from None
    return f"wrote, read back and deleted a file in {where}"


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
    if artifacts.kind is BackendKind.HTTP:  # the tracking server's own store, through it
        checks.append(check("artifact store", lambda: _server_artifacts(tracking, experiment), artifacts))
    elif artifacts.kind is not BackendKind.MEMORY:
        checks.append(check("artifact store", lambda: _storage_probe(artifacts), artifacts))
    checks.append(check("migrations", lambda: _migrations(metadata), metadata))
    checks.append(check("metadata DB", lambda: _metadata(metadata, db), metadata))
    if logs.kind is not BackendKind.MEMORY:
        checks.append(check("prediction log storage",
                            lambda: _storage_probe(logs, "predictions", experiment), logs))
    return checks
