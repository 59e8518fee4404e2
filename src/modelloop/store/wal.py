"""The write-ahead log under the prediction log: a row is on disk before its answer leaves.

Each writing store owns one directory under the WAL root and holds `<writer>.lock` with `flock`
for its whole life, so two servers on one home never share a log and a recoverer can tell a
dead writer (its lock is free) from a live one. Appends go to the writer's active segment with a
group commit: one `fsync` covers every caller waiting at that moment. The flusher rotates the
segment (new appends go to a fresh one) and turns the closed one into Parquet.

Layout under the root (`predictions/<model>/_wal/`)::

    ids                  high-water mark of segment ids, flock'd while allocating
    <writer>.lock        flock'd by the live writer; taken, then removed, by a recoverer
    <writer>/<key>.wal   segments: MAGIC, then records

A segment id is wall-clock microseconds, pushed past the persisted high-water mark, so ids are
unique for the root and increase forever (across restarts, writers and a clock stepping back),
and a Parquet file named after a segment is named exactly once. Its key renders the id as
`YYYYmmddTHHMMSSffffffZ`, so segments and files sort in logging order.

A record is `<u32 length><u32 crc32(payload)><payload>`, little-endian. Reading stops at the
first record that is short, empty or fails its CRC: the tail a crash tore mid-write, which was
never acknowledged because its fsync had not returned.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from modelloop.errors import DataError, ModelloopError

logger = logging.getLogger(__name__)

MAGIC = b"MLWAL01\n"
SUFFIX = ".wal"
LOCK_SUFFIX = ".lock"
IDS = "ids"
_HEADER = struct.Struct("<II")
_MAX_PAYLOAD = 1 << 30  # a length past this is garbage, not a record
_EPOCH = datetime(1970, 1, 1)
_KEY = re.compile(r"^\d{8}T\d{12}Z$")
_WRITER = re.compile(r"^\d+-[0-9a-f]{12}$")


class CorruptSegment(DataError):
    """A file in the WAL that does not start like a segment: kept aside, never replayed."""


# -- records and segments ----------------------------------------------------------------------


def encode_record(payload: bytes) -> bytes:
    """Frame one payload: length and CRC first, so a reader can tell a whole record from a torn one."""
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_records(data: bytes, source: Path) -> tuple[list[bytes], int]:
    """The whole records in a segment's bytes, and how many bytes after them were ignored."""
    if len(data) < len(MAGIC):
        return [], 0  # created, header not yet whole: nothing in it was ever acknowledged
    if data[: len(MAGIC)] != MAGIC:
        raise CorruptSegment(f"{source} is not a modelloop WAL segment (unexpected header)")
    records: list[bytes] = []
    offset = len(MAGIC)
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + length
        if length == 0 or length > _MAX_PAYLOAD or end > len(data):
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        records.append(payload)
        offset = end
    return records, len(data) - offset


def read_segment(path: Path) -> tuple[list[bytes], int] | None:
    """Records of a segment (see `decode_records`); None if the segment is gone (flushed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_records(data, path)


def segment_key(segment_id: int) -> str:
    """The id as a sortable UTC stamp: `YYYYmmddTHHMMSSffffffZ`."""
    return f"{_EPOCH + timedelta(microseconds=segment_id):%Y%m%dT%H%M%S%f}Z"


def segment_id(key: str) -> int | None:
    """The inverse of `segment_key`; None for a name that is not a key."""
    if not _KEY.match(key):
        return None
    stamp = datetime.strptime(key, "%Y%m%dT%H%M%S%fZ")
    return (stamp - _EPOCH) // timedelta(microseconds=1)


def writer_dirs(root: Path) -> list[tuple[str, Path]]:
    """Every writer directory under the root, live or dead, as (writer id, directory)."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    found = [(e.name, Path(e.path)) for e in entries if _WRITER.match(e.name) and e.is_dir()]
    return sorted(found)


def segment_paths(directory: Path) -> list[Path]:
    """A writer's segments, oldest first."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    keys = [e.name[: -len(SUFFIX)] for e in entries if e.name.endswith(SUFFIX)]
    return [directory / f"{key}{SUFFIX}" for key in sorted(keys) if _KEY.match(key)]


def all_segments(root: Path) -> list[Path]:
    """Every segment of every writer, ordered by segment id (the order they were opened in)."""
    paths = [p for _writer, d in writer_dirs(root) for p in segment_paths(d)]
    return sorted(paths, key=lambda p: p.name)


def quarantine(path: Path) -> Path:
    """Set a segment that cannot be read aside (`.corrupt`), so it is kept but never replayed."""
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    fsync_dir(path.parent)
    return target


# -- locks and ids -----------------------------------------------------------------------------


def lock_file(path: Path, *, create: bool) -> int | None:
    """Take `path`'s flock without waiting: a descriptor holding it, or None (held or missing)."""
    import fcntl

    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    for _attempt in range(8):
        try:
            descriptor = os.open(path, flags, 0o644)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        # The holder may have removed the file just before we locked it: a lock on a removed
        # file guards nothing, so only a lock on the file still at `path` counts.
        try:
            same = os.path.samestat(os.fstat(descriptor), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return descriptor
        os.close(descriptor)
        if not create:
            return None
    raise ModelloopError(f"cannot lock {path}: it keeps being replaced by another process")


def is_live(root: Path, writer: str) -> bool:
    """Whether the writer's lock is held by someone (its process still runs)."""
    path = root / f"{writer}{LOCK_SUFFIX}"
    descriptor = lock_file(path, create=False)
    if descriptor is None:
        return path.exists()
    os.close(descriptor)
    return False


def allocate_segment_id(root: Path) -> int:
    """A new segment id for the root: past the clock's now and every id handed out before."""
    import fcntl

    path = root / IDS
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # closing the descriptor releases it
        raw = os.pread(descriptor, 64, 0).strip()
        try:
            high = int(raw)
        except ValueError:
            # A new (or damaged) mark: the segments on disk are the ids that matter.
            high = max((segment_id(p.stem) or 0 for p in all_segments(root)), default=0)
        allocated = max(time.time_ns() // 1000, high + 1)
        os.pwrite(descriptor, b"%020d\n" % allocated, 0)
        os.fsync(descriptor)
        return allocated
    finally:
        os.close(descriptor)


class SharedLock:
    """A writer's lock handed to a process it starts (the flush worker), to hold as its own.

    Pickled while a process is being spawned, the descriptor is inherited: parent and child
    then hold one flock, not two, so the writer counts as alive (`is_live`, a recoverer's
    `lock_file`) until both have exited. That is what keeps a recoverer from flushing a segment
    that an orphaned worker of a killed server is still flushing.
    """

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor

    def __reduce__(self) -> tuple[Any, ...]:
        from multiprocessing import context, reduction

        if context.get_spawning_popen() is None:  # pickled for a queue or a file: no descriptor
            raise ModelloopError("a WAL lock can only be handed to a process as it is started")
        return (_inherited_lock, (reduction.DupFd(self.descriptor),))


def _inherited_lock(handle: Any) -> SharedLock:
    return SharedLock(handle.detach())


# -- durable directories -----------------------------------------------------------------------


def fsync_dir(directory: Path) -> None:
    """Make the entries of `directory` (a rename, a new or removed file) durable."""
    if os.name != "posix":  # Windows cannot open a directory to fsync it
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_dirs(directory: Path) -> None:
    """Create missing directories and make each new entry durable in its parent."""
    if directory.is_dir():
        return
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        fsync_dir(path.parent)


def remove_writer(root: Path, writer: str) -> bool:
    """Remove a writer whose segments are all gone; True if removed. The caller holds its lock.

    The lock file goes last, while still held, so nobody can take the writer for dead while its
    directory exists.
    """
    directory = root / writer
    try:
        directory.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False  # something is left in it (a quarantined segment): keep it for a person
    fsync_dir(root)
    (root / f"{writer}{LOCK_SUFFIX}").unlink(missing_ok=True)
    fsync_dir(root)
    return True


def orphan_locks(root: Path) -> list[str]:
    """Writers with a lock file but no directory (removed halfway, or died while starting)."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    found: list[str] = []
    for entry in entries:
        writer = entry.name[: -len(LOCK_SUFFIX)]
        is_lock = entry.name.endswith(LOCK_SUFFIX) and _WRITER.match(writer)
        if is_lock and not (root / writer).exists():
            found.append(writer)
    return found


# -- the writer --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    path: Path
    descriptor: int
    records: int = 0


class WriterLog:
    """One writer's segments, appended with group commit: one fsync covers every waiting caller.

    A caller queues its records and waits; whoever finds no write in flight becomes the leader,
    takes everything queued at that moment, writes it with one `write` and one `fsync`, and
    wakes the others. While it syncs, new callers queue for the next leader. If the write or
    the fsync fails, every caller of that batch gets the error (none of them is acknowledged)
    and the segment is closed; bytes of the batch that did reach it may still be flushed.
    """

    def __init__(self, root: Path) -> None:
        make_dirs(root)
        self.root = root
        self.writer = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # The lock exists before the directory: a directory without a held lock is dead.
        lock = lock_file(root / f"{self.writer}{LOCK_SUFFIX}", create=True)
        if lock is None:
            raise ModelloopError(f"cannot take the WAL lock of a new writer under {root}")
        self._lock = lock
        self.directory = root / self.writer
        self.directory.mkdir()
        fsync_dir(root)
        self._cond = threading.Condition()
        self._active: _Segment | None = None
        self._closed: list[Path] = []
        self._pending: list[bytes] = []
        self._pending_records = 0
        self._collecting = 1  # the batch that new records join
        self._done = 0  # every batch up to this one has been written and synced (or failed)
        self._failed: dict[int, BaseException] = {}
        self._leading = False
        self._sealed = False
        self._released = False

    def append(self, payloads: Sequence[bytes]) -> None:
        """Write the payloads as records; returns once they are fsynced (group commit)."""
        data = b"".join(encode_record(p) for p in payloads)
        with self._cond:
            if self._sealed:
                raise ModelloopError(f"the prediction log's writer {self.directory} is closed")
            mine = self._collecting
            self._pending.append(data)
            self._pending_records += len(payloads)
            while self._done < mine:
                if self._leading:
                    self._cond.wait()
                else:
                    self._lead()  # `mine` is the batch being collected: nobody took it yet
            failure = self._failed.get(mine)
        if failure is not None:
            raise ModelloopError(
                f"could not write the prediction log's WAL in {self.directory}: {failure}"
            ) from failure

    def _lead(self) -> None:
        # Called holding the condition; releases it while writing so others can queue.
        batch, buffers, count = self._collecting, self._pending, self._pending_records
        self._pending, self._pending_records = [], 0
        self._collecting += 1
        self._leading = True
        segment = self._active
        synced = False
        error: BaseException | None = None
        self._cond.release()
        try:
            if segment is None:
                segment = self._open_segment()
            _write_all(segment.descriptor, b"".join(buffers))
            os.fsync(segment.descriptor)
            synced = True
        except OSError as exc:
            error = exc  # reported to every caller of the batch; the others go on
        finally:
            self._cond.acquire()
            if synced and segment is not None:
                self._active = segment
                segment.records += count
            else:
                if segment is not None:
                    # Whatever part of the batch reached the file stays its tail: close the
                    # segment so no record follows a torn one, and let the flusher take it.
                    self._active = None
                    self._closed.append(segment.path)
                    _close_quietly(segment.descriptor)
                self._failed[batch] = error or ModelloopError("the write was interrupted")
                for old in [b for b in self._failed if b < batch - 1024]:
                    del self._failed[old]
            self._done = batch
            self._leading = False
            self._cond.notify_all()

    def _open_segment(self) -> _Segment:
        path = self.directory / f"{segment_key(allocate_segment_id(self.root))}{SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        descriptor = os.open(path, flags, 0o644)
        try:
            _write_all(descriptor, MAGIC)
            os.fsync(descriptor)
            fsync_dir(self.directory)  # the segment's name is durable before any record in it
        except BaseException:
            os.close(descriptor)
            path.unlink(missing_ok=True)
            raise
        return _Segment(path, descriptor)

    def shared_lock(self) -> SharedLock:
        """This writer's lock, for a process started now to hold too (see `SharedLock`)."""
        return SharedLock(self._lock)

    def has_records(self) -> bool:
        """Whether anything waits for the flusher (records since the last rotation)."""
        with self._cond:
            return bool(self._closed) or (self._active is not None and self._active.records > 0)

    def rotate(self) -> None:
        """Close the active segment if it holds records; new appends go to a fresh one."""
        with self._cond:
            if self._active is None or self._active.records == 0:
                return
            sealed = self._sealed
        fresh = None if sealed else self._open_segment()  # outside the lock: appends go on
        with self._cond:
            while self._leading:
                self._cond.wait()
            old, self._active = self._active, fresh
            if old is not None:
                self._closed.append(old.path)
        if old is not None:
            _close_quietly(old.descriptor)

    def closed_segments(self) -> list[Path]:
        """Segments no append goes to any more, oldest first: the flusher's work."""
        with self._cond:
            return sorted(self._closed, key=lambda p: p.name)

    def forget(self, path: Path) -> None:
        """The flusher has moved this closed segment into Parquet and removed it."""
        with self._cond:
            self._closed = [p for p in self._closed if p != path]

    def seal(self) -> None:
        """Refuse new appends and wait until every queued one is written."""
        with self._cond:
            self._sealed = True
            self._cond.notify_all()
            while self._leading or self._pending:
                self._cond.wait()

    def release(self) -> None:
        """Close the files and the lock; remove the directory if no record is left in it."""
        with self._cond:
            if self._released:
                return
            self._released = True
            active, self._active = self._active, None
        if active is not None:
            _close_quietly(active.descriptor)
        try:
            for path in segment_paths(self.directory):
                found = read_segment(path)
                if found is not None and not found[0]:
                    path.unlink()
            remove_writer(self.root, self.writer)
        finally:
            os.close(self._lock)

    def abandon(self) -> None:
        """Let go of files and lock and leave every segment as it is: what a crash leaves."""
        with self._cond:
            self._sealed = self._released = True
            active, self._active = self._active, None
        if active is not None:
            _close_quietly(active.descriptor)
        os.close(self._lock)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _close_quietly(descriptor: int) -> None:
    try:
        os.close(descriptor)
    except OSError as exc:  # the data was synced (or reported) already; a close error adds nothing
        logger.debug("closing a WAL segment failed: %s", exc)
