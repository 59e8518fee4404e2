"""Which backends a project uses: a kind, a location fit to show (passwords masked) and where the
setting came from. `modelloop status` shows them and `modelloop doctor` checks them; later
backends (PostgreSQL, S3-compatible storage, a remote MLflow server) fit the same description.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit

#: What shows in place of a password.
MASK = "***"
#: The origin of an artifact store a tracking server manages (its own setting, not ours).
SERVER_ARTIFACTS = "tracking server"


class BackendKind(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    FILE = "file"
    S3 = "s3"
    HTTP = "http"
    #: A user function (`module:function`) as the data source.
    PYTHON = "python"
    #: An in-process backend (tests, embedding): nothing outside the process to reach.
    MEMORY = "memory"
    #: A scheme modelloop does not know (MLflow's plugins have their own): passed on as is.
    OTHER = "other"


#: URL schemes by kind; a SQLAlchemy URL may name its driver (`postgresql+psycopg://`).
_SCHEMES = {
    "sqlite": BackendKind.SQLITE,
    "postgresql": BackendKind.POSTGRESQL,
    "postgres": BackendKind.POSTGRESQL,
    "mysql": BackendKind.MYSQL,
    "file": BackendKind.FILE,
    "s3": BackendKind.S3,
    "http": BackendKind.HTTP,
    "https": BackendKind.HTTP,
}
#: Kinds reached over the network: a doctor bounds how long it waits for them.
NETWORK_KINDS = frozenset({BackendKind.POSTGRESQL, BackendKind.MYSQL, BackendKind.S3, BackendKind.HTTP})


def kind_of(url: str) -> BackendKind:
    """The kind a URL or a plain path names (no scheme: a local path)."""
    scheme = urlsplit(url).scheme.lower().split("+", 1)[0]
    if len(scheme) <= 1:  # no scheme, or a drive letter (`C:\...`): a local path
        return BackendKind.FILE
    return _SCHEMES.get(scheme, BackendKind.OTHER)


def _parts(url: str) -> SplitResult | None:
    parts = urlsplit(url)
    return parts if parts.scheme and parts.password is not None else None


def mask(url: str) -> str:
    """`url` with any password replaced by `***`: `postgresql://user:***@host:5432/db`."""
    parts = _parts(url)
    if parts is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{user}:{MASK}@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def secrets_of(url: str) -> list[str]:
    """The password in `url`, raw and as percent-encoded in it, for scrubbing messages."""
    from urllib.parse import unquote

    parts = _parts(url)
    if parts is None or not parts.password:
        return []
    raw = parts.password
    return sorted({raw, unquote(raw)}, key=len, reverse=True)


def scrub_secrets(text: str, backends: Iterable[Backend]) -> str:
    """`text` with every backend's password masked: for messages that may quote a URL."""
    for backend in backends:
        for secret in secrets_of(backend.url):
            text = text.replace(secret, MASK)
    return text


@dataclass(frozen=True)
class Backend:
    """One backend: `url` holds the real setting (password and all) and is never shown;
    `location` is what is shown."""

    role: str
    kind: BackendKind
    url: str = field(repr=False)
    origin: str

    @property
    def location(self) -> str:
        return mask(self.url)

    @property
    def title(self) -> str:
        return ROLE_TITLES.get(self.role, self.role)

    def to_dict(self) -> dict[str, str]:
        return {"kind": str(self.kind), "location": self.location, "origin": self.origin}


#: How each role is named to a person, in the order status and doctor list them.
ROLE_TITLES = {
    "tracking": "tracking store",
    "artifacts": "artifact store",
    "metadata": "metadata DB",
    "logs": "prediction log storage",
    "data": "data source",
}


def _from_env(role: str, variable: str, default: str) -> Backend:
    given = os.environ.get(variable)
    url = given or default
    return Backend(role, kind_of(url), url, f"${variable}" if given else "default")


@dataclass(frozen=True)
class Backends:
    """The backends a project was opened with (see `resolve_backends`)."""

    tracking: Backend
    artifacts: Backend
    metadata: Backend
    logs: Backend

    def all(self) -> list[Backend]:
        return [self.tracking, self.artifacts, self.metadata, self.logs]

    @property
    def artifact_root(self) -> str | None:
        """Where a new experiment keeps its artifacts; None: where the tracking server says."""
        return None if self.artifacts.origin == SERVER_ARTIFACTS else self.artifacts.url



def resolve_backends(home: Path) -> Backends:
    """The backends the environment names, else the embedded defaults under `home`:
    $MODELLOOP_TRACKING_URI (MLflow tracking and registry), $MODELLOOP_DB_URL (modelloop's
    metadata), $MODELLOOP_STORAGE (the prediction and label logs, the reports).

    MLflow's artifacts: a tracking server (`http://...`) keeps them where it was started to
    (its `--artifacts-destination` or `--default-artifact-root`), as every client of a shared
    server does; else they go beside the logs on object storage (`$MODELLOOP_STORAGE/mlartifacts`
    for `s3://...`), else to `home/mlartifacts`."""
    tracking = _from_env("tracking", "MODELLOOP_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    logs = _from_env("logs", "MODELLOOP_STORAGE", str(home))
    if tracking.kind is BackendKind.HTTP:
        artifacts = Backend("artifacts", BackendKind.HTTP, tracking.url, SERVER_ARTIFACTS)
    elif logs.kind is BackendKind.S3:
        root = logs.url.rstrip("/") + "/mlartifacts"
        artifacts = Backend("artifacts", BackendKind.S3, root, logs.origin)
    else:
        root = (home / "mlartifacts").as_uri()
        artifacts = Backend("artifacts", kind_of(root), root, "default")
    return Backends(
        tracking=tracking,
        artifacts=artifacts,
        metadata=_from_env("metadata", "MODELLOOP_DB_URL", f"sqlite:///{home / 'modelloop.db'}"),
        logs=logs,
    )


def data_backend(spec: str, project_dir: Path) -> Backend:
    """The project file's `data.source`: files (a path or a glob) or a `module:function`."""
    from modelloop.data import FunctionSource, open_source

    found = open_source(spec, project_dir, timestamp="")
    if isinstance(found, FunctionSource):
        return Backend("data", BackendKind.PYTHON, spec, "project file")
    path = spec if Path(spec).is_absolute() else str(project_dir / spec)
    kind = kind_of(spec) if "://" in spec else BackendKind.FILE
    return Backend("data", kind, spec if "://" in spec else path, "project file")
