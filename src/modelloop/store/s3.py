"""S3-compatible object storage (AWS S3, MinIO, ...) for the logs and the reports.

`S3Location` is one `s3://bucket/prefix`, read and written through pyarrow's S3 filesystem
(DuckDB's httpfs extension would be downloaded at run time; pyarrow ships its S3 client).
Credentials come from the standard AWS sources (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_PROFILE`, an instance role); an S3-compatible server is named by `AWS_ENDPOINT_URL_S3` or
`AWS_ENDPOINT_URL`, as boto3 and MLflow read them (pyarrow does not read them by itself).

`S3LogStore` keeps the prediction and label logs there; see its docstring.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from modelloop.errors import ModelloopError
from modelloop.store import parquet
from modelloop.store.parquet import ParquetLogStore
from modelloop.store.wal import fsync_dir, make_dirs

if TYPE_CHECKING:
    from pyarrow.fs import S3FileSystem

logger = logging.getLogger(__name__)

#: Where an S3-compatible server's address is read from, first found wins (boto3's names).
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
_CONNECT_SECONDS = 5.0
_REQUEST_SECONDS = 30.0
_ATTEMPTS = 3
_CHUNK = 1 << 20
#: A cached file absent from the store is dropped once this old; a younger one may be a file
#: this machine has just written and is uploading.
_UPLOAD_GRACE = 3600.0
#: The local folder's id, in the folder: it tags the files its WAL flushes write.
_FOLDER_ID = "folder-id"
_ID = re.compile(r"[0-9a-f]{12}")


#: What went wrong on the store, as far as its answer tells.
Trouble = Literal["bucket not found", "access denied", "cannot connect", "failed"]


class StorageError(ModelloopError):
    """Object storage refused or failed a request; `trouble` says which way (for the doctor)."""

    def __init__(self, message: str, trouble: Trouble) -> None:
        super().__init__(message)
        self.trouble: Trouble = trouble

    def __reduce__(self) -> tuple[type[StorageError], tuple[str, Trouble]]:
        return type(self), (str(self), self.trouble)  # raised in the flush worker, re-raised here


class S3Location:
    """One `s3://bucket/prefix`. Objects appear whole (one PUT, or a completed multipart
    upload) or not at all; every failure is a ModelloopError naming the s3:// URL and saying
    what is wrong as far as the server told: bucket not found, access denied, cannot connect."""

    def __init__(self, url: str, *, filesystem: S3FileSystem | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise ModelloopError(f"{url!r} is not an s3://bucket/prefix location")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._filesystem = filesystem

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Location({self.url!r})"

    def child(self, *names: str) -> S3Location:
        """The location `names` below this one (sharing its connection)."""
        prefix = "/".join(p.strip("/") for p in (self.prefix, *names) if p.strip("/"))
        return S3Location(f"s3://{self.bucket}/{prefix}", filesystem=self._filesystem)

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}" if name else self.url

    @property
    def filesystem(self) -> S3FileSystem:
        if self._filesystem is None:
            self._filesystem = s3_filesystem()
        return self._filesystem

    def _path(self, name: str = "") -> str:
        return "/".join(p for p in (self.bucket, self.prefix, name.strip("/")) if p)

    # -- objects ----------------------------------------------------------------------------------

    def put_file(self, local: Path, name: str) -> str:
        """Upload `local` as `name` under this location; returns its s3:// URL."""
        with open(local, "rb") as source:  # a local file's error is the local disk's, not S3's
            try:
                with self.filesystem.open_output_stream(self._path(name)) as out:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
            except OSError as exc:
                raise self.error(exc, "cannot write", name) from None
        return self.url_of(name)

    def put_bytes(self, name: str, data: bytes) -> str:
        try:
            with self.filesystem.open_output_stream(self._path(name)) as out:
                out.write(data)
        except OSError as exc:
            raise self.error(exc, "cannot write", name) from None
        return self.url_of(name)

    def read_bytes(self, name: str) -> bytes:
        """The object's bytes; FileNotFoundError if there is none."""
        try:
            with self.filesystem.open_input_stream(self._path(name)) as stream:
                data: bytes = stream.read()
                return data
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self.error(exc, "cannot read", name) from None

    def download(self, name: str, local: Path) -> bool:
        """Copy the object to `local`, whole or not at all (a hidden temp file, fsynced, renamed);
        False if the object is gone."""
        try:
            stream = self.filesystem.open_input_stream(self._path(name))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self.error(exc, "cannot read", name) from None
        # Hidden, and unlike a log writer's temp names: recovery removes it only once it is old.
        temporary = local.parent / f".{local.name}.dl{os.getpid()}{uuid.uuid4().hex[:8]}.tmp"
        try:
            with stream, open(temporary, "wb") as out:
                while True:
                    try:
                        chunk = stream.read(_CHUNK)
                    except OSError as exc:
                        raise self.error(exc, "cannot read", name) from None
                    if not chunk:
                        break
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, local)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return True

    def exists(self, name: str) -> bool:
        from pyarrow.fs import FileType

        try:
            return bool(self.filesystem.get_file_info(self._path(name)).type == FileType.File)
        except OSError as exc:
            raise self.error(exc, "cannot read", name) from None

    def delete(self, name: str) -> None:
        try:
            self.filesystem.delete_file(self._path(name))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self.error(exc, "cannot delete", name) from None

    def listing(self, name: str = "") -> tuple[list[str], list[str]]:
        """(folders, files) directly under `name`, by base name, sorted; empty if there is none."""
        from pyarrow.fs import FileSelector, FileType

        selector = FileSelector(self._path(name), recursive=False, allow_not_found=True)
        try:
            found = self.filesystem.get_file_info(selector)
        except OSError as exc:
            raise self.error(exc, "cannot list", name) from None
        folders = sorted(info.base_name for info in found if info.type == FileType.Directory)
        files = sorted(info.base_name for info in found if info.type == FileType.File)
        return folders, files

    def tree(self) -> dict[str, list[str]]:
        """Every file one level of folders down, by folder (one paginated listing), sorted."""
        from pyarrow.fs import FileSelector, FileType

        root = self._path()
        selector = FileSelector(root, recursive=True, allow_not_found=True)
        try:
            found = self.filesystem.get_file_info(selector)
        except OSError as exc:
            raise self.error(exc, "cannot list", "") from None
        folders: dict[str, list[str]] = {}
        for info in found:
            relative = info.path[len(root) :].strip("/").split("/")
            if info.type == FileType.File and len(relative) == 2:
                folders.setdefault(relative[0], []).append(relative[1])
        return {folder: sorted(files) for folder, files in folders.items()}

    def check_bucket(self) -> None:
        """Raise a ModelloopError if the bucket does not exist (a listing alone would read as empty)."""
        from pyarrow.fs import FileType

        try:
            found = self.filesystem.get_file_info(self.bucket)
        except OSError as exc:
            raise self.error(exc, "cannot reach", "") from None
        if found.type == FileType.NotFound:
            raise StorageError(
                f"{self.url}: bucket {self.bucket!r} not found: create it, or set MODELLOOP_STORAGE "
                "to a bucket that exists",
                "bucket not found",
            )

    def error(self, exc: OSError, action: str, name: str) -> StorageError:
        """`exc` from pyarrow's S3 client as a message a person can act on."""
        trouble, why = self.explain(exc)
        return StorageError(f"{action} {self.url_of(name)}: {why}", trouble)

    def explain(self, exc: OSError) -> tuple[Trouble, str]:
        # pyarrow raises a bare OSError whose text carries the AWS error code
        # ("AWS Error NO_SUCH_BUCKET during ..."): the code is the only structured fact it gives.
        text = str(exc)
        if "NO_SUCH_BUCKET" in text:
            return "bucket not found", f"bucket {self.bucket!r} not found"
        if any(code in text for code in _DENIED):
            return "access denied", (
                "access denied: check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE) and the bucket's policy"
            )
        if "NETWORK_CONNECTION" in text or "curlCode" in text:
            return "cannot connect", f"cannot connect to {endpoint() or 'AWS S3'}: {_last_detail(text)}"
        return "failed", text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def endpoint() -> str | None:
    """The S3-compatible server the environment names, if any (None: AWS itself)."""
    for variable in ENDPOINT_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    return None


def s3_filesystem() -> S3FileSystem:
    """pyarrow's S3 client, configured from the environment as boto3 would be."""
    from pyarrow import fs

    options: dict[str, Any] = {
        "connect_timeout": _CONNECT_SECONDS,
        "request_timeout": _REQUEST_SECONDS,
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=_ATTEMPTS),
    }
    found = endpoint()
    if found:
        parts = urlsplit(found)
        if parts.scheme in ("http", "https"):
            options["scheme"] = parts.scheme
            options["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        else:
            options["endpoint_override"] = found
    for variable in _REGION_VARIABLES:
        region = os.environ.get(variable, "").strip()
        if region:
            options["region"] = region
            break
    try:
        return fs.S3FileSystem(**options)
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot open S3 storage: {exc}", "failed") from None


#: AWS error codes (as pyarrow spells them) and HTTP answers that mean the credentials do not do.
_DENIED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "MISSING_AUTHENTICATION",
           "EXPIRED_TOKEN", "UNRECOGNIZED_CLIENT", "HTTP response code: 403", "AccessDenied")


def _last_detail(text: str) -> str:
    tail = text.rsplit("Details:", 1)[-1] if "Details:" in text else text
    return tail.strip().splitlines()[0] if tail.strip() else text


# -- the log store -------------------------------------------------------------------------------


class S3LogStore(ParquetLogStore):
    """The prediction and label logs on S3-compatible storage, with ParquetLogStore's layout.

    Objects on S3 are never changed once written, and every name is unique: a direct append
    writes `part-<stamp>-<uuid>.parquet`, and a write-ahead-log flush names its file after the
    segment, so a flush repeated after a crash writes the same name with the same rows. So the
    whole of ParquetLogStore runs on a local folder (`cache`, in the home): the write-ahead log
    (the server's acknowledged rows are on local disk first), temp files, the partitions. Each
    Parquet file finalised there is then uploaded (one PUT: whole or not at all) before the
    step that depends on it: a direct append returns after its upload (a failed upload removes
    the local file and raises), and a WAL segment is deleted only after its files are in the
    store. A flush repeated after a crash uploads a file it finds already written again: the
    same name and rows, so each row is stored exactly once.

    Reads list the store's partitions in the window (only those), download the files not yet
    in the local folder (immutable objects: a cached file never goes stale), drop cached files
    gone from the store (older than an hour: a younger one may be this machine's upload in
    flight), and run ParquetLogStore's DuckDB queries on the local files. Another machine's
    rows are seen once flushed; this machine's WAL rows at once.

    Compaction is off: merging is a rewrite, and deleting a merge's inputs on S3 while another
    machine still reads or appends them is not yet made safe. Partitions hold one file per
    flush and per append.
    """

    def __init__(
        self,
        location: str | S3Location,
        cache: str | Path,
        model: str,
        *,
        id_column: str,
        timestamp_column: str,
        target_column: str,
        flush_interval: float | timedelta = 10.0,
        flush_in_worker: bool = True,
        kind: str = "predictions",
    ) -> None:
        super().__init__(
            cache,
            model,
            id_column=id_column,
            timestamp_column=timestamp_column,
            target_column=target_column,
            flush_interval=flush_interval,
            flush_in_worker=flush_in_worker,
            kind=kind,
        )
        self.location = location if isinstance(location, S3Location) else S3Location(location)
        self._remote_predictions = self.location.child(kind, model)
        self._remote_labels = self.location.child("labels", model)
        self._bucket_checked = False

    @classmethod
    def beside(cls, store: ParquetLogStore, location: str) -> S3LogStore:
        """An S3 store over `store`'s local folder, with its settings (for the flush worker)."""
        return cls(
            location,
            store.root,
            store.model,
            id_column=store.id_column,
            timestamp_column=store.timestamp_column,
            target_column=store.target_column,
            flush_interval=store.flush_interval,
            flush_in_worker=store.flush_in_worker,
            kind=store.predictions_dir.parent.name,
        )

    @property
    def storage_url(self) -> str | None:
        return self.location.url

    @cached_property
    def _wal_tag(self) -> str:
        # Segment keys (UTC microsecond stamps) are unique under one local folder only: two
        # machines could flush the same key to the same object name, the second PUT replacing
        # the first's rows. The folder's own random id keeps their names apart, and stays the
        # same for a flush repeated after a crash (exactly once needs the same name).
        return "wal" + _folder_id(self.root)

    def __repr__(self) -> str:
        return f"S3LogStore({self._remote_predictions.url!r}, cache={str(self.root)!r})"

    # -- writes: upload each finished file before what depends on it ----------------------------

    def _publish(self, path: Path) -> None:
        remote = self._remote_for(path)
        self._check_bucket()
        remote.put_file(path, f"{path.parent.name}/{path.name}")

    def _publish_new(self, path: Path) -> None:
        try:
            self._publish(path)
        except BaseException:
            path.unlink(missing_ok=True)  # the append failed: no row of it may be read here
            raise

    def _remote_for(self, path: Path) -> S3Location:
        if path.parent.parent == self.labels_dir:
            return self._remote_labels
        if path.parent.parent == self.predictions_dir:
            return self._remote_predictions
        raise ModelloopError(f"{path} is not in the log under {self.root}")

    def _compact_pending(self, tag: str) -> None:
        self._to_compact = set()  # off on object storage: see the class docstring

    def _check_bucket(self) -> None:
        if not self._bucket_checked:
            self.location.check_bucket()
            self._bucket_checked = True

    # -- reads: bring the window's files into the local folder -----------------------------------

    def _pull(self, labels: bool, start: datetime | None, end: datetime | None,
              *, newest_only: bool = False) -> None:
        self._check_bucket()
        remote = self._remote_labels if labels else self._remote_predictions
        local = self.labels_dir if labels else self.predictions_dir
        if start is None and end is None and not newest_only:  # every partition: one listing
            for name, files in sorted(remote.tree().items()):
                if _partition_day(name) is not None:
                    self._pull_partition(remote, local / name, name, files)
            return
        folders, _files = remote.listing()
        days = sorted((day, name) for name in folders if (day := _partition_day(name)) is not None)
        chosen = [name for day, name in days if _in_window(day, start, end)]
        for name in reversed(chosen) if newest_only else chosen:
            _folders, files = remote.listing(name)
            if self._pull_partition(remote, local / name, name, files) and newest_only:
                return  # the newest partition with files holds the newest timestamp

    def _pull_partition(
        self, remote: S3Location, directory: Path, name: str, files: list[str]
    ) -> bool:
        """Make the local partition hold the remote one's `files`; True if there are any."""
        wanted = {f for f in files if f.endswith(".parquet") and not f.startswith(".")}
        have = {p.name for p in parquet._parquet_files(directory)}
        missing = sorted(wanted - have)
        if missing:
            make_dirs(directory)
            for file in missing:
                remote.download(f"{name}/{file}", directory / file)
            fsync_dir(directory)
        now = time.time()
        for file in sorted(have - wanted):
            path = directory / file
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > _UPLOAD_GRACE:
                    path.unlink()
                    logger.info("dropped %s from the cache: %s no longer holds it", path,
                                remote.url_of(f"{name}/{file}"))
        return bool(wanted)


def _folder_id(root: Path) -> str:
    """A random id of the local folder, made once (the first of two racing makers wins)."""
    path = root / _FOLDER_ID
    try:
        found = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        found = ""
    if _ID.fullmatch(found):
        return found
    make_dirs(root)
    temporary = root / f".{_FOLDER_ID}.{uuid.uuid4().hex}.tmp"
    with open(temporary, "w", encoding="ascii") as out:
        out.write(uuid.uuid4().hex[:12])
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(temporary, path)  # fails if another process made it first
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(root)
    found = path.read_text(encoding="ascii").strip()
    if not _ID.fullmatch(found):
        raise ModelloopError(f"{path} is damaged: delete it (the log's cache makes a new one)")
    return found


def _partition_day(name: str) -> date | None:
    if not name.startswith(parquet._PARTITION):
        return None
    try:
        return date.fromisoformat(name[len(parquet._PARTITION) :])
    except ValueError:
        return None


def _in_window(day: date, start: datetime | None, end: datetime | None) -> bool:
    first = datetime(day.year, day.month, day.day)
    if start is not None and first + timedelta(days=1) <= start:
        return False
    return not (end is not None and first > end)


def local_cache(home: Path, url: str) -> Path:
    """The local folder of an S3 log store: `<home>/cache/s3/<bucket>/<prefix>`."""
    location = S3Location(url)
    parts = [p for p in location.prefix.split("/") if p not in ("", ".", "..")]
    return home.joinpath("cache", "s3", location.bucket, *parts)
