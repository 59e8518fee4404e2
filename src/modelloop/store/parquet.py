"""The embedded log store: Parquet partitioned by date, read with DuckDB, behind a write-ahead log.

The adapter behind `modelloop.store.logs.LogStore`. Served predictions go through the
write-ahead log (`modelloop.store.wal`) first; a flusher turns closed segments into Parquet,
and compaction merges small files. The CLI and the server reach it only through the port.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import orjson

from modelloop import lazy
from modelloop.errors import DataError, ModelloopError
from modelloop.store import wal
from modelloop.store.logs import (
    _EPOCH,
    _YIELD_EVERY,
    LABEL_SEQ,
    RECEIVED_AT,
    LogViews,
    _bound,
    _decode,
    _LogStoreBase,
    _micros,
    _Record,
    _records_table,
    _to_datetime,
    _utcnow,
    connect_duckdb,
    yield_gil,
)
from modelloop.store.wal import fsync_dir as _fsync_dir
from modelloop.store.wal import make_dirs as _make_dirs

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy.module("pandas")  # imported when a frame is built: DuckDB queries need none

logger = logging.getLogger(__name__)

_PARTITION = "date="
_WAL_DIR = "_wal"
_COMPACTION_DIR = "_compaction"
_GENERATION = "generation"
_JOURNAL = ".journal"
_WAL_TAG = "wal"  # part-<segment key>-wal.parquet: the file one segment made for one date
_PART = re.compile(r"^part-(\d{8}T\d{12}Z)-([A-Za-z0-9]+)\.parquet$")
_TEMP = re.compile(r"^\.(?P<final>.+)\.(?P<writer>\d+-[0-9a-f]{12})\.tmp$")
_UNTAGGED_TEMP_AGE = 3600.0  # seconds: a direct append's temp file this old belongs to a dead writer

# Compaction (see ParquetLogStore): size-tiered, bounded, neighbours only.
_FAN_IN = 8  # a tier merges once this many neighbouring files sit in it
_TIER_FLOOR = 1 << 20  # files under 1 MiB are one tier: rewriting them is cheap
_TIER_RATIO = 8  # each tier holds files up to this many times bigger than the one below
_MAX_FILES = 12  # past this many files a partition merges its cheapest neighbours anyway
_FINAL_BYTES = 64 << 20  # a file this big is never rewritten again
_MAX_MERGE_BYTES = 256 << 20  # one merge reads at most this much
_MAX_MERGE_FILES = 64
_MERGES_PER_ROUND = 16
_ROW_GROUP = 1 << 20

_READ_ATTEMPTS = 20
_PARENT_CHECK = 0.1  # seconds: how soon the flush worker of a killed server notices and exits
_EPOCH_DAY = date(1970, 1, 1)
_DAY_US = 86_400_000_000

_T = TypeVar("_T")


class ParquetLogStore(_LogStoreBase):
    """The logs as Parquet under `root`, partitioned by date, queried with DuckDB.

    Predictions live in `root/predictions/<model>/date=YYYY-MM-DD/` by the row's timestamp
    date, labels in `root/labels/<model>/date=YYYY-MM-DD/` by the date they arrived. Only
    Parquet files (and, while one is written, a hidden `.<name>.tmp`) sit in a partition.
    Every file is written atomically (temp name, fsync, rename, fsync the directory): a crash
    leaves at most a hidden temp file that reads ignore, never a truncated `.parquet` that would
    break DuckDB's whole scan. `append_predictions` and `append_labels` write files directly.

    `append_requests` (the server) goes through a write-ahead log instead, `_wal/` beside the
    partitions (see `modelloop.store.wal`): it returns once the records are fsynced, one fsync
    for every request waiting at that moment. A daemon flusher moves the log into Parquet at
    most every `flush_interval` seconds, merges small files, and `close()` moves the rest.

    Flush, exactly once across a crash at any point: the writer rotates its segment (appends go
    on in a new one); for each date in the closed segment it writes
    `part-<segment key>-wal.parquet`, a name that is a function of the segment alone, skipping
    a date whose file exists already (a crashed flush got that far; files appear whole or not
    at all); it fsyncs those partitions, and only then deletes the segment.

    Recovery (`recover()`): writers whose lock is free died (or closed without their rows
    moved), and so did their flush worker, which holds the same lock; each of their segments is
    flushed as above, then their directory goes. Temp files of dead writers go too, and a
    compaction a crash interrupted is finished or undone.

    The flush worker. Converting a segment is pure Python over every record (about a second of
    CPU for 24,000 requests), and the allocations trigger full garbage collections: in a
    server's process it would hold the GIL and stall requests. So the flusher rotates the
    segment here (this process owns the writer) and hands the rest, the conversion and the
    compaction (`_move`, the same code either way), to one worker process, spawned (a fork
    would copy a server's threads' locks mid-use) when the flusher starts, so its imports are
    paid before the first flush; `flush()` waits for it without holding the GIL.
    `flush_in_worker=False` keeps all of it in this process; `close()` and `recover()` always
    work here. If the worker dies or fails with an OSError, the flush is done again here, with
    one warning: a segment it finished is gone and skipped, a date whose file it wrote is
    skipped, a merge it left midway is settled by its journal, and its temp files are removed.

    Why an orphaned worker is harmless. The worker inherits the writer's lock descriptor, so
    the two hold one flock and the writer counts as alive until both have exited: a `recover()`
    never flushes a segment the worker of a killed server may still be flushing (and leaves
    that writer for the next `recover()`; reads see its rows in the WAL meanwhile). Two
    flushers of one segment could write rows twice: one finishes, its file is merged and
    deleted, and the other, working from what it read before, writes the file again. The
    orphan sees its parent id change within 0.1 s and exits at once, leaving what a crash
    leaves, which the steps above settle: names that depend on the segment alone, atomic
    renames, unlinks that tolerate a missing file.

    Compaction keeps a partition at a handful of files whatever the traffic. Files are merged
    with their neighbours only (so rows with equal timestamps keep their logging order),
    size-tiered: files under 1 MiB are one tier (rewriting them is cheap), and each tier above
    holds files up to 8 times bigger; 8 neighbours in one tier merge into one file, so a row in
    a busy day is rewritten about log8(day's size / 1 MiB) times, and a file of 64 MiB is never
    rewritten. Past 12 files, the 8 neighbours smallest together merge anyway. Only files whose
    segment is gone from every WAL are merged (the partition is listed before the WAL is), so a
    segment still in a WAL always has its own file, never a merged one, and a replay that skips
    an existing file is right.
    One compactor at a time (`_compaction/lock`); one merge:

    1. bump `_compaction/generation` (readers watch it);
    2. write the journal `_compaction/<generation>.journal`: the partition, inputs and output;
    3. write the output `part-<first input's key>-m<generation>.parquet` (temp, fsync, rename,
       fsync the partition);
    4. delete the inputs, fsync the partition;
    5. delete the journal.

    After a crash, a journal whose output exists is rolled forward (its inputs deleted), one
    whose output does not is rolled back (journal and temp file deleted); a reader in the
    meantime counts the output when it sees it and the inputs otherwise.

    Reads (`read_predictions`, `latest_prediction_time`) see every acknowledged row, in Parquet
    or still in any writer's WAL (live or dead; a segment being appended is read up to its last
    whole record), once. They (a) read the generation and the journals, (b) read the WAL
    segments, (c) then list the partitions, dropping a journal's inputs where its output is
    listed, and starting over where it is not and an input is missing, (d) scan the files with
    DuckDB, (e) add a segment's rows for a date only if that segment's file for the date was
    not in the scan (a merged file cannot hold rows of a segment still in a WAL), and
    (f) start over if a scanned file vanished or the generation moved (a merge began meanwhile).
    `prediction_files()` lists Parquet only.
    """

    def __init__(
        self,
        root: str | Path,
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
            model,
            id_column=id_column,
            timestamp_column=timestamp_column,
            target_column=target_column,
        )
        interval = (
            flush_interval.total_seconds()
            if isinstance(flush_interval, timedelta)
            else float(flush_interval)
        )
        if not interval > 0:
            raise ModelloopError(
                f"the prediction log's flush interval must be longer than zero, got {flush_interval!r}"
            )
        self.root = Path(root)
        # `kind` names the log: "predictions" (what the champion answered) or "shadow" (what the
        # challenger would have answered): the same layout under another folder.
        self.predictions_dir = self.root / kind / model
        self.labels_dir = self.root / "labels" / model
        self.wal_dir = self.predictions_dir / _WAL_DIR
        self.compaction_dir = self.predictions_dir / _COMPACTION_DIR
        self.flush_interval = interval
        self.flush_in_worker = flush_in_worker
        self._setup_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._stop = threading.Event()
        self._writer: wal.WriterLog | None = None
        self._flusher: threading.Thread | None = None
        self._closed = False
        self._to_compact: set[str] = set()
        self._damaged: set[tuple[str, str, int]] = set()
        self._flushed_at = time.monotonic()

    # -- where the files also go (an object store: `modelloop.store.s3.S3LogStore`) ---------

    @property
    def storage_url(self) -> str | None:
        """The remote store the files are uploaded to; None: the local root is the store."""
        return None

    @property
    def _wal_tag(self) -> str:
        """The tag of the files a WAL flush writes (`part-<segment key>-<tag>.parquet`). Segment
        keys are unique under one root only: a store shared by several roots tags them apart."""
        return _WAL_TAG

    def _publish(self, path: Path) -> None:
        """Make a finished Parquet file durable beyond this disk (nothing to do here); called
        before anything that depends on the file (a WAL segment's deletion). Idempotent."""

    def _publish_new(self, path: Path) -> None:
        """`_publish` for a file a direct append just wrote: a failure removes the file."""
        self._publish(path)

    def _pull(
        self, labels: bool, start: datetime | None, end: datetime | None, *, newest_only: bool = False
    ) -> None:
        """Bring the partitions a read of `(start, end]` opens up to date (nothing to do here)."""

    # -- the write-ahead log ----------------------------------------------------------------

    def flush(self) -> None:
        """Move every acknowledged WAL row of this store into Parquet now, then compact.

        The rotation happens here; the rest runs in the flush worker when there is one (this
        thread waits without holding the GIL), and here if the worker fails.
        """
        with self._flush_lock:
            writer = self._writer
            if writer is None:
                return
            writer.rotate()
            segments = writer.closed_segments()
            if not (segments or self._to_compact):
                self._flushed_at = time.monotonic()
                return
            try:
                if self._flush_in_worker(writer, segments):
                    self._flushed_at = time.monotonic()
                    return
            except BrokenProcessPool as exc:
                logger.warning(
                    "the flush worker of the prediction log under %s died (%s); flushing here instead",
                    self.predictions_dir,
                    exc,
                )
                self._drop_pool()
                self._remove_stale_temps(writer.writer, mine_too=True)  # what it was writing
            except OSError as exc:
                logger.warning(
                    "the flush worker of the prediction log under %s failed (%s); flushing here instead",
                    self.predictions_dir,
                    exc,
                )
            self._move(segments, writer.writer, done=writer.forget)
            self._flushed_at = time.monotonic()

    def backlog(self) -> tuple[int, float]:
        """(bytes of acknowledged rows still only in the write-ahead log, seconds since the last
        flush finished): the flush's health, for /metrics."""
        size = 0
        for path in self.wal_dir.rglob("*"):
            try:
                if path.is_file() and path.suffix == ".wal":
                    size += path.stat().st_size
            except OSError:
                continue  # flushed away while listed
        return size, time.monotonic() - self._flushed_at

    def recover(self) -> int:
        """Replay the WAL of every dead writer into Parquet, exactly once; returns rows replayed.

        Safe at any time and from any process: a writer whose lock is held is alive and left
        alone. Also removes dead writers' temp files and settles an interrupted compaction.
        """
        with self._flush_lock:
            writer = self._own_writer(start_flusher=False)
            self._settle_compactions(writer.writer)
            replayed = 0
            for name, directory in wal.writer_dirs(self.wal_dir):
                if name == writer.writer:
                    continue
                lock = wal.lock_file(self.wal_dir / f"{name}{wal.LOCK_SUFFIX}", create=True)
                if lock is None:
                    continue  # alive
                try:
                    for path in wal.segment_paths(directory):
                        rows, touched = self._flush_segment(path, writer.writer)
                        replayed += rows
                        self._to_compact |= touched
                    wal.remove_writer(self.wal_dir, name)
                finally:
                    os.close(lock)
            for name in wal.orphan_locks(self.wal_dir):
                lock = wal.lock_file(self.wal_dir / f"{name}{wal.LOCK_SUFFIX}", create=False)
                if lock is not None:
                    try:
                        wal.remove_writer(self.wal_dir, name)
                    finally:
                        os.close(lock)
            self._remove_stale_temps(writer.writer)
            self._compact_pending(writer.writer)
            if replayed:
                logger.info("replayed %d prediction row(s) from a dead writer's WAL", replayed)
            return replayed

    def close(self) -> None:
        """Stop the flusher, move the WAL into Parquet, remove this writer's files. Idempotent."""
        with self._setup_lock:
            if self._closed:
                return
            self._closed = True
            flusher, writer = self._flusher, self._writer
        self._stop.set()
        if flusher is not None:
            flusher.join()
        with self._flush_lock:  # a flush running in another thread ends before the worker goes
            self._drop_pool()
        if writer is None:
            return
        writer.seal()
        try:
            self.flush()
        finally:
            with self._flush_lock:
                writer.release()  # keeps the directory (for recover()) if a flush failed
                self._writer = None

    def _write_requests(self, payloads: list[bytes]) -> None:
        self._own_writer(start_flusher=True).append(payloads)

    def _own_writer(self, *, start_flusher: bool) -> wal.WriterLog:
        with self._setup_lock:
            if self._closed:
                raise ModelloopError(
                    f"the prediction log under {self.predictions_dir} is closed; open a new store"
                )
            if self._writer is None:
                self._writer = wal.WriterLog(self.wal_dir)
            if start_flusher and self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name=f"modelloop-log-flusher-{self.model}", daemon=True
                )
                self._flusher.start()
            return self._writer

    def _flush_loop(self) -> None:
        writer = self._writer
        if writer is not None:
            try:
                self._pool(writer)  # a fresh interpreter takes a second or two to import pyarrow
            except OSError as exc:
                logger.warning(
                    "could not start the flush worker of the prediction log under %s (%s); "
                    "flushes will try again and run here meanwhile",
                    self.predictions_dir,
                    exc,
                )
        while not self._stop.wait(self.flush_interval):
            writer = self._writer
            if writer is None or not (writer.has_records() or self._to_compact):
                continue
            try:
                self.flush()
            except Exception:  # the thread must outlive a bad moment (a full disk): the WAL keeps the rows
                logger.exception(
                    "moving the prediction log's WAL under %s into Parquet failed; retrying in %.3gs",
                    self.wal_dir,
                    self.flush_interval,
                )

    # -- the flush worker -------------------------------------------------------------------

    def _pool(self, writer: wal.WriterLog) -> ProcessPoolExecutor | None:
        """The flush worker, started (and warming up) on first use; None if flushes stay here."""
        with self._pool_lock:
            if not self.flush_in_worker or self._closed:
                return None
            if self._executor is None:
                executor = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),  # never fork: a server has threads
                    initializer=_start_worker,
                    initargs=(os.getpid(), writer.shared_lock()),
                )
                try:
                    executor.submit(_warm_up)  # spawns the process now
                except BaseException:
                    executor.shutdown(wait=False, cancel_futures=True)
                    raise
                self._executor = executor
            return self._executor

    def _drop_pool(self) -> None:
        """Stop the worker and wait until its process has exited (nothing of it runs on)."""
        with self._pool_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _flush_in_worker(self, writer: wal.WriterLog, segments: list[Path]) -> bool:
        """Have the worker move `segments` and compact; False if there is no worker."""
        executor = self._pool(writer)
        if executor is None:
            return False
        job = _FlushJob(
            root=str(self.root),
            model=self.model,
            id_column=self.id_column,
            timestamp_column=self.timestamp_column,
            target_column=self.target_column,
            segments=tuple(str(p) for p in segments),
            tag=writer.writer,
            to_compact=tuple(sorted(self._to_compact)),
            damaged=tuple(sorted(self._damaged)),
            storage=self.storage_url,
            kind=self.predictions_dir.parent.name,
        )
        done = executor.submit(_run_flush_job, job).result()
        for record in done.logs:
            logging.getLogger(record.name).handle(record)
        for path in segments:
            writer.forget(path)
        self._to_compact = set(done.to_compact)
        self._damaged = set(done.damaged)
        logger.debug("the flush worker (pid %d) moved %d segment(s)", done.pid, len(segments))
        return True

    def _move(
        self, segments: Sequence[Path], tag: str, done: Callable[[Path], None] | None = None
    ) -> None:
        """Turn closed segments into Parquet, then compact: the heavy half of a flush.

        The one copy of that work, run by the flush worker and by this process alike.
        """
        for path in segments:
            _rows, touched = self._flush_segment(path, tag)
            self._to_compact |= touched
            if done is not None:
                done(path)
        self._compact_pending(tag)

    def _flush_segment(self, path: Path, tag: str) -> tuple[int, set[str]]:
        """Write one closed segment's Parquet files, then delete it: (rows written, partitions)."""
        try:
            found = wal.read_segment(path)
        except wal.CorruptSegment as exc:
            kept = wal.quarantine(path)
            logger.warning("%s; kept as %s for inspection, not replayed", exc, kept)
            return 0, set()
        if found is None:
            return 0, set()
        payloads, torn = found
        if torn:
            logger.warning(
                "ignoring %d byte(s) after the last whole record of %s: a write cut short by a "
                "crash or an I/O error, never acknowledged",
                torn,
                path,
            )
        by_day: dict[int, list[_Record]] = {}
        for count, record in enumerate(_decode_all(payloads, path), start=1):
            if count % _YIELD_EVERY == 0:
                yield_gil()
            for day, piece in _split_by_day(record, self.timestamp_column):
                by_day.setdefault(day, []).append(piece)
        name = _part_name(path.name[: -len(wal.SUFFIX)], self._wal_tag)
        written = 0
        synced: list[Path] = []
        for day in sorted(by_day):
            directory = self.predictions_dir / _partition_name(day)
            final = directory / name
            if final.exists():
                self._publish(final)  # a flush before a crash got this far; the file is whole
                continue
            _make_dirs(directory)
            table = _records_table(by_day[day], self.id_column, self.timestamp_column)
            _write_table(table, final, tag)
            written += table.num_rows
            synced.append(directory)
        for directory in synced:
            _fsync_dir(directory)
            self._publish(directory / name)
        path.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):  # its writer's directory went with it
            _fsync_dir(path.parent)
        return written, {d.name for d in synced}

    def _remove_stale_temps(self, own: str, *, mine_too: bool = False) -> None:
        """Remove temp files of dead writers (and this writer's, once its dead worker left some)."""
        alive: dict[str, bool] = {own: not mine_too}
        now = time.time()
        directories = [d for _day, d in _partitions(self.predictions_dir)] + [self.compaction_dir]
        for directory in directories:
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                    continue
                tagged = _TEMP.match(entry.name)
                if tagged:
                    writer = tagged.group("writer")
                    if writer not in alive:
                        alive[writer] = wal.is_live(self.wal_dir, writer)
                    if alive[writer]:
                        continue
                else:
                    try:
                        if now - entry.stat().st_mtime < _UNTAGGED_TEMP_AGE:
                            continue
                    except FileNotFoundError:
                        continue
                Path(entry.path).unlink(missing_ok=True)
                logger.info("removed %s, left by a writer that died", entry.path)

    # -- compaction -------------------------------------------------------------------------

    def _compact_pending(self, tag: str) -> None:
        partitions, self._to_compact = self._to_compact, set()
        if not partitions:
            return
        _make_dirs(self.compaction_dir)
        lock = wal.lock_file(self.compaction_dir / "lock", create=True)
        if lock is None:  # another process is compacting: try again next time
            self._to_compact |= partitions
            return
        try:
            self._settle_journals()
            for name in sorted(partitions):
                self._compact_partition(self.predictions_dir / name, tag)
        except BaseException:
            self._to_compact |= partitions
            raise
        finally:
            os.close(lock)

    def _compact_partition(self, directory: Path, tag: str) -> None:
        for _merge in range(_MERGES_PER_ROUND):
            files = _sized_files(directory)
            # Listed after the partition: a segment gone now was gone when its file was listed.
            live = {p.name[: -len(wal.SUFFIX)] for p in wal.all_segments(self.wal_dir)}
            plan = _plan_merge(files, partial(self._mergeable, directory, live=live))
            if not plan:
                return
            self._merge(directory, plan, tag)

    def _mergeable(self, directory: Path, name: str, size: int, *, live: set[str]) -> bool:
        match = _PART.match(name)
        if match is None or (directory.name, name, size) in self._damaged:
            return False
        return not (match.group(2) == self._wal_tag and match.group(1) in live)

    def _merge(self, directory: Path, inputs: list[str], tag: str) -> None:
        import pyarrow.parquet as pq

        paths = [directory / name for name in inputs]
        damaged = [p for p in paths if not _is_readable_parquet(p)]
        if damaged:
            for path in damaged:
                logger.warning(
                    "not compacting %s: not a readable Parquet file; move it out of the log", path
                )
                self._damaged.add((directory.name, path.name, _size(path)))
            return
        schema = _unified_schema([pq.read_schema(p) for p in paths])
        key = _part_key(inputs[0])
        generation = _read_generation(self.compaction_dir) + 1
        while (directory / _part_name(key, f"m{generation}")).exists():
            generation += 1  # a lost generation file must not reuse a name
        output = _part_name(key, f"m{generation}")
        _write_bytes(self.compaction_dir / _GENERATION, b"%d\n" % generation, tag)
        _fsync_dir(self.compaction_dir)
        journal = self.compaction_dir / f"{generation}{_JOURNAL}"
        entry = {"partition": directory.name, "inputs": inputs, "output": output}
        _write_bytes(journal, orjson.dumps(entry), tag)
        _fsync_dir(self.compaction_dir)
        try:
            _write_merged(paths, schema, directory / output, tag)
        except BaseException:
            journal.unlink(missing_ok=True)
            raise
        _fsync_dir(directory)
        for path in paths:
            path.unlink(missing_ok=True)
        _fsync_dir(directory)
        journal.unlink()
        _fsync_dir(self.compaction_dir)

    def _settle_compactions(self, tag: str) -> None:
        if not self.compaction_dir.is_dir():
            return
        lock = wal.lock_file(self.compaction_dir / "lock", create=True)
        if lock is None:
            return  # a live compactor settles its own
        try:
            self._settle_journals()
        finally:
            os.close(lock)

    def _settle_journals(self) -> None:
        """Finish (output exists) or undo (it does not) merges a crash interrupted."""
        for journal in _read_journals(self.compaction_dir):
            directory = self.predictions_dir / journal.partition
            if (directory / journal.output).exists():
                for name in journal.inputs:
                    (directory / name).unlink(missing_ok=True)
                _fsync_dir(directory)
            elif directory.is_dir():
                for entry in os.scandir(directory):
                    if entry.name.startswith(f".{journal.output}.") and entry.name.endswith(".tmp"):
                        Path(entry.path).unlink(missing_ok=True)
            journal.path.unlink(missing_ok=True)
            _fsync_dir(self.compaction_dir)

    # -- reads ------------------------------------------------------------------------------

    def prediction_files(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[Path]:
        """The Parquet files a read of `(start, end]` opens: only partitions that can hold rows.

        Public so that another engine (Spark) can read exactly the same files. Parquet only:
        rows still in the write-ahead log are not in these files until the next flush, and a
        compaction may replace a listed file later (list again if one has gone).
        """
        start, end = _bound(start), _bound(end)
        self._pull(False, start, end)
        return self._consistent(lambda view: view.prediction_files(start, end), with_wal=False)

    def _write_predictions(self, frame: pd.DataFrame) -> None:
        days = frame[self.timestamp_column].dt.strftime("%Y-%m-%d")
        stamp = _utcnow()
        for day in sorted(days.unique()):
            part = frame.loc[(days == day).to_numpy()]
            final = _write_parquet(part, self.predictions_dir / f"{_PARTITION}{day}", stamp, "predictions")
            self._publish_new(final)

    def _read_predictions(
        self, start: datetime | None, end: datetime | None
    ) -> pd.DataFrame | None:
        column = _quote(self.timestamp_column)
        clauses: list[str] = []
        params: list[Any] = []
        if start is not None:
            clauses.append(f"{column} > ?")
            params.append(start)
        if end is not None:
            clauses.append(f"{column} <= ?")
            params.append(end)
        where = " AND ".join(clauses)
        self._pull(False, start, end)

        def read(view: _View) -> pd.DataFrame | None:
            files = view.prediction_files(start, end)
            found = _scan_parquet(files, "*", where, params)
            pending = view.wal_records(files, start, end)
            if not pending:
                return found
            table = _records_table(pending, self.id_column, self.timestamp_column)
            recent: pd.DataFrame = table.to_pandas()
            return recent if found is None else pd.concat([found, recent], ignore_index=True)

        return self._consistent(read)

    def _latest_prediction_time(self) -> datetime | None:
        column = self.timestamp_column
        self._pull(False, None, None, newest_only=True)

        def latest(view: _View) -> datetime | None:
            stamps = [max(r.columns[column]) for _k, records in view.segments for r in records if r.rows]
            newest = _EPOCH + timedelta(microseconds=max(stamps)) if stamps else None
            # The newest partition holds the newest timestamp in Parquet: open nothing else.
            for _day, directory in reversed(view.partitions()):
                files = view.files(directory)
                if not files:
                    continue
                found = _scan_parquet(files, f"max({_quote(column)}) AS latest", "", [])
                if found is not None and len(found) and not pd.isna(found["latest"].iloc[0]):
                    stored = _to_datetime(found["latest"].iloc[0])
                    return stored if newest is None else max(newest, stored)
            return newest

        return self._consistent(latest)

    def _consistent(self, body: Callable[[_View], _T], *, with_wal: bool = True) -> _T:
        """Run `body` on a view of the log that counts every row once (see the class docstring).

        A read the flusher keeps disturbing is tried `_READ_ATTEMPTS` times; the last try takes
        what it finds (with a warning where a merge is midway) rather than fail a monitoring run.
        """
        for attempt in range(_READ_ATTEMPTS):
            final = attempt == _READ_ATTEMPTS - 1
            generation = _read_generation(self.compaction_dir)
            journals = _read_journals(self.compaction_dir)
            segments = self._wal_segments() if with_wal else []
            view = _View(
                self.predictions_dir, journals, segments, self.timestamp_column, final, self._wal_tag
            )
            try:
                result = body(view)
            except _Retry:
                if final:
                    raise
                time.sleep(min(0.05, 0.001 * 2**attempt))
                continue
            if final or _read_generation(self.compaction_dir) == generation:
                return result
        raise DataError(f"the prediction log under {self.predictions_dir} kept changing while read")

    def _wal_segments(self) -> list[tuple[str, list[_Record]]]:
        found: list[tuple[str, list[_Record]]] = []
        for path in wal.all_segments(self.wal_dir):
            try:
                read = wal.read_segment(path)
            except wal.CorruptSegment as exc:
                logger.warning("%s; its rows are not read", exc)
                continue
            if read is not None and read[0]:
                found.append((path.name[: -len(wal.SUFFIX)], _decode_all(read[0], path)))
        return found

    # -- labels -----------------------------------------------------------------------------

    def _write_labels(self, frame: pd.DataFrame, received: datetime) -> None:
        directory = self.labels_dir / f"{_PARTITION}{received:%Y-%m-%d}"
        self._publish_new(_write_parquet(frame, directory, received, "labels"))

    def _read_labels(self) -> pd.DataFrame | None:
        self._pull(True, None, None)
        files = [f for _day, d in _partitions(self.labels_dir) for f in _parquet_files(d)]
        return _scan_parquet(files, "*", "", [])

    # -- queries where the data lives ------------------------------------------------------

    def _query(
        self,
        start: datetime | None,
        end: datetime | None,
        body: Callable[[LogViews], _T],
        spark: Any = None,
    ) -> _T:
        """`body` on views over the Parquet files (and the WAL's rows) of one consistent look at
        the log, DuckDB's or (given a session) Spark's; read again from the start if a
        compaction replaced a file meanwhile."""
        where = self._window_filter(start, end)
        empty_predictions, empty_labels = self._empty_views()
        labels_select = (
            f"SELECT {_quote(self.id_column)}, {_quote(self.target_column)}, {RECEIVED_AT}, "
            # One write makes one file, stamped with one _received_at: the row number orders
            # the labels received at the same instant.
            f"file_row_number AS {LABEL_SEQ}"
        )
        self._pull(False, start, end)
        self._pull(True, None, None)

        def run(view: _View) -> _T:
            files = view.prediction_files(start, end)
            pending = view.wal_records(files, start, end)
            recent = _records_table(pending, self.id_column, self.timestamp_column) if pending else None
            label_files = [f for _day, d in _partitions(self.labels_dir) for f in _parquet_files(d)]
            if spark is not None:
                return self._query_spark(spark, files, recent, label_files, where, body)
            views = _Views(where, recent, labels_select, empty_predictions, empty_labels)
            return _query_views(files, label_files, views, self.root, body)

        return self._consistent(run)

    def _query_spark(
        self,
        spark: Any,
        files: Sequence[Path],
        recent: Any,
        label_files: Sequence[Path],
        where: str,
        body: Callable[[LogViews], _T],
    ) -> _T:
        from pyspark.errors import PySparkException

        from modelloop.store.spark_views import SparkSources, spark_views

        sources = SparkSources(files, recent, label_files, None, where)
        try:
            with spark_views(
                spark, sources, id_column=self.id_column, timestamp_column=self.timestamp_column,
                target_column=self.target_column,
            ) as views:
                return body(views)
        except PySparkException as exc:
            gone = [f for f in [*files, *label_files] if not f.exists()]
            if gone:  # merged away by a compaction since it was listed: the caller reads again
                raise _Retry(f"{gone[0]} was removed while the log was read") from exc
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"Spark cannot read the log under {self.root}: {reason}") from exc


# -- the flush worker process --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FlushJob:
    """What the worker needs to flush for a store: plain values, pickled to another process."""

    root: str
    model: str
    id_column: str
    timestamp_column: str
    target_column: str
    segments: tuple[str, ...]
    tag: str  # the writer's: temp files carry it, so a recoverer knows whose they are
    to_compact: tuple[str, ...]
    damaged: tuple[tuple[str, str, int], ...]
    storage: str | None = None  # the object store the files are uploaded to, if any
    kind: str = "predictions"


@dataclass(frozen=True, slots=True)
class _FlushDone:
    to_compact: tuple[str, ...]  # partitions left for the next round (another compactor held the lock)
    damaged: tuple[tuple[str, str, int], ...]
    pid: int
    logs: tuple[logging.LogRecord, ...]  # for the server's own handlers: the worker has none


def _run_flush_job(job: _FlushJob) -> _FlushDone:
    """In the worker: the same `_move` a store runs in-process, by a store with no writer of its own."""
    import logging.handlers
    import queue

    store = ParquetLogStore(
        job.root,
        job.model,
        id_column=job.id_column,
        timestamp_column=job.timestamp_column,
        target_column=job.target_column,
        flush_in_worker=False,
        kind=job.kind,
    )
    if job.storage is not None:
        from modelloop.store.s3 import S3LogStore

        store = S3LogStore.beside(store, job.storage)
    store._to_compact = set(job.to_compact)
    store._damaged = set(job.damaged)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = logging.handlers.QueueHandler(records)  # formats each record, so it pickles
    package = logging.getLogger("modelloop")
    package.addHandler(handler)
    try:
        store._move([Path(p) for p in job.segments], job.tag)
    finally:
        package.removeHandler(handler)
    logs: list[logging.LogRecord] = []
    while not records.empty():
        logs.append(records.get())
    return _FlushDone(
        tuple(sorted(store._to_compact)), tuple(sorted(store._damaged)), os.getpid(), tuple(logs)
    )


_held: list[wal.SharedLock] = []  # the worker's share of its writer's lock, held until it exits


def _start_worker(parent: int, lock: wal.SharedLock) -> None:
    """In the worker, first: hold the writer's lock, and exit soon after the server is gone.

    A pool's idle worker does not notice its parent's death (it holds both ends of its own
    queues), and one that is flushing would finish first; an orphan would hold the writer's
    lock and keep its segments from being recovered. Killed at any point, it leaves only what
    a crash leaves, which the on-disk protocol settles.
    """
    import signal

    _held.append(lock)
    # Ctrl-C reaches the whole process group: the server decides when to stop, and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is re-parented, so its parent id changes
        time.sleep(_PARENT_CHECK)
    os._exit(1)  # no logging: stderr may be a pipe nobody reads any more


def _warm_up() -> None:
    """Import what a flush needs, so the first flush does not wait for a fresh interpreter."""
    import pyarrow.compute
    import pyarrow.parquet  # noqa: F401


# -- Parquet files ------------------------------------------------------------------------------


def _partitions(base: Path) -> list[tuple[date, Path]]:
    """The `date=YYYY-MM-DD` directories under `base`, oldest first; anything else is ignored."""
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return []
    found: list[tuple[date, Path]] = []
    for entry in entries:
        if not entry.name.startswith(_PARTITION) or not entry.is_dir():
            continue
        try:
            day = date.fromisoformat(entry.name[len(_PARTITION) :])
        except ValueError:
            continue
        found.append((day, Path(entry.path)))
    return sorted(found)


def _parquet_files(directory: Path) -> list[Path]:
    # Names sort by write time (part-<utc stamp>-...), which keeps ties in logging order.
    # Temp files start with "." and end in ".tmp": never read.
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return sorted(
        Path(e.path)
        for e in entries
        if e.name.endswith(".parquet") and not e.name.startswith(".") and e.is_file()
    )


def _scan_parquet(
    files: Sequence[Path], select: str, where: str, params: Sequence[Any]
) -> pd.DataFrame | None:
    """Run one DuckDB query over `files`; a damaged file is skipped with a warning, not fatal."""
    import duckdb

    readable = list(files)
    while readable:
        try:
            return _query_parquet(readable, select, where, params)
        except duckdb.Error as exc:
            gone = [f for f in readable if not f.exists()]
            if gone:  # merged away by a compaction since it was listed: the caller reads again
                raise _Retry(f"{gone[0]} was removed while the log was read") from exc
            damaged = [f for f in readable if not _is_readable_parquet(f)]
            if not damaged:
                folder = readable[0].parent.parent
                raise DataError(f"cannot read the log under {folder}: {exc}") from exc
            for path in damaged:
                logger.warning(
                    "skipping %s: not a readable Parquet file (truncated by a crash or copied in "
                    "half-written); move it out of the log directory",
                    path,
                )
            readable = [f for f in readable if f not in damaged]
    return None


def _query_parquet(
    files: Sequence[Path], select: str, where: str, params: Sequence[Any]
) -> pd.DataFrame:
    import duckdb

    sql = (
        f"SELECT {select} FROM read_parquet(?, union_by_name = true, hive_partitioning = false)"
        + (f" WHERE {where}" if where else "")
    )
    # No progress bar: DuckDB draws one on stderr for long scans, in the middle of the CLI's output.
    connection = duckdb.connect()
    try:
        connection.execute("SET enable_progress_bar = false")
        # DuckDB preserves insertion order without ORDER BY: files, then rows, as logged.
        frame: pd.DataFrame = connection.execute(sql, [[str(f) for f in files], *params]).df()
        return frame
    finally:
        connection.close()


@dataclass(frozen=True)
class _Views:
    """How `_query_views` defines the two views (SQL pieces, and the WAL's rows as Arrow)."""

    where: str
    recent: Any  # a pyarrow Table of WAL rows in the window, or None
    labels_select: str
    empty_predictions: str
    empty_labels: str


def _query_views(
    files: Sequence[Path],
    label_files: Sequence[Path],
    views: _Views,
    root: Path,
    body: Callable[[LogViews], _T],
) -> _T:
    """Define the `predictions` and `labels` views over the files and run `body` on them.

    A file removed meanwhile (merged away by a compaction) raises `_Retry`: the caller reads
    again from a fresh listing. A damaged file is skipped with a warning, as `_scan_parquet` does.
    """
    import duckdb

    readable, labelled = list(files), list(label_files)
    while True:
        connection = connect_duckdb()
        try:
            parts = []
            if readable:
                parts.append(f"SELECT * FROM {_read_parquet(readable)} WHERE {views.where}")
            if views.recent is not None:
                connection.register("_wal_rows", views.recent)
                parts.append("SELECT * FROM _wal_rows")
            predictions = " UNION ALL BY NAME ".join(parts) if parts else views.empty_predictions
            connection.execute(f"CREATE VIEW predictions AS {predictions}")
            labels = (
                f"{views.labels_select} FROM {_read_parquet(labelled, file_row_number=True)}"
                if labelled
                else views.empty_labels
            )
            connection.execute(f"CREATE VIEW labels AS {labels}")
            return body(LogViews(connection))
        except duckdb.Error as exc:
            everything = readable + labelled
            gone = [f for f in everything if not f.exists()]
            if gone:  # merged away by a compaction since it was listed: the caller reads again
                raise _Retry(f"{gone[0]} was removed while the log was read") from exc
            damaged = [f for f in everything if not _is_readable_parquet(f)]
            if not damaged:
                raise DataError(f"cannot read the log under {root}: {exc}") from exc
            for path in damaged:
                logger.warning(
                    "skipping %s: not a readable Parquet file (truncated by a crash or copied in "
                    "half-written); move it out of the log directory",
                    path,
                )
            readable = [f for f in readable if f not in damaged]
            labelled = [f for f in labelled if f not in damaged]
        finally:
            connection.close()


def _read_parquet(files: Sequence[Path], *, file_row_number: bool = False) -> str:
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    extra = ", file_row_number = true" if file_row_number else ""
    return f"read_parquet([{listed}], union_by_name = true, hive_partitioning = false{extra})"


def _is_readable_parquet(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(path).metadata  # noqa: B018 - reading the footer is the check
    except (OSError, ValueError):
        return False
    return True


def _write_parquet(frame: pd.DataFrame, directory: Path, stamp: datetime, what: str) -> Path:
    """Write `frame` as a new file in `directory`, atomically and durably."""
    import pyarrow as pa

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{what}: cannot store these rows as Parquet: {exc}") from exc
    _make_dirs(directory)
    final = directory / f"part-{stamp:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex}.parquet"
    _write_table(table, final, None)
    _fsync_dir(directory)
    return final


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# -- WAL records into Parquet -------------------------------------------------------------------


def _decode_all(payloads: Sequence[bytes], source: Path) -> list[_Record]:
    records: list[_Record] = []
    for count, payload in enumerate(payloads, start=1):
        if count % _YIELD_EVERY == 0:
            yield_gil()
        try:
            records.append(_decode(payload, source))
        except DataError as exc:  # its CRC held, so it is not a torn write: say so, keep the rest
            logger.warning("%s; skipping that record", exc)
    return records


def _split_by_day(record: _Record, timestamp_column: str) -> list[tuple[int, _Record]]:
    """The record's rows by date partition (days since the epoch), usually one piece."""
    days = [stamp // _DAY_US for stamp in record.columns[timestamp_column]]
    if all(day == days[0] for day in days):
        return [(days[0], record)] if days else []
    rows: dict[int, list[int]] = {}
    for row, day in enumerate(days):
        rows.setdefault(day, []).append(row)
    return [(day, record.take(picked)) for day, picked in sorted(rows.items())]


# -- consistent reads ----------------------------------------------------------------------------


class _Retry(DataError):
    """The log changed under a read in a way that could count a row twice or miss it."""


@dataclass(frozen=True, slots=True)
class _Journal:
    path: Path
    partition: str
    inputs: tuple[str, ...]
    output: str


class _View:
    """One look at the prediction log: WAL first, then partitions resolved by the journals."""

    def __init__(
        self,
        base: Path,
        journals: Sequence[_Journal],
        segments: list[tuple[str, list[_Record]]],
        timestamp_column: str,
        lenient: bool,
        wal_tag: str = _WAL_TAG,
    ) -> None:
        self.segments = segments
        self._base = base
        self._wal_tag = wal_tag
        self._journals: dict[str, list[_Journal]] = {}
        for journal in journals:
            self._journals.setdefault(journal.partition, []).append(journal)
        self._timestamp_column = timestamp_column
        self._lenient = lenient
        self._partitions: list[tuple[date, Path]] | None = None
        self._listed: dict[str, list[Path]] = {}

    def partitions(self) -> list[tuple[date, Path]]:
        if self._partitions is None:
            self._partitions = _partitions(self._base)
        return self._partitions

    def files(self, directory: Path) -> list[Path]:
        """The partition's files once each: a merge's inputs or its output, never both."""
        listed = self._listed.get(directory.name)
        if listed is None:
            listed = self._resolve(directory, _parquet_files(directory))
            self._listed[directory.name] = listed
        return listed

    def prediction_files(self, start: datetime | None, end: datetime | None) -> list[Path]:
        files: list[Path] = []
        for day, directory in self.partitions():
            first = datetime(day.year, day.month, day.day)
            if start is not None and first + timedelta(days=1) <= start:
                continue
            if end is not None and first > end:
                continue
            files.extend(self.files(directory))
        return files

    def wal_records(
        self, scanned: Sequence[Path], start: datetime | None, end: datetime | None
    ) -> list[_Record]:
        """The WAL rows in `(start, end]` that the scan of `scanned` did not already hold."""
        seen = {(p.parent.name, p.name) for p in scanned}
        low = None if start is None else _micros(start)
        high = None if end is None else _micros(end)
        column = self._timestamp_column
        found: list[_Record] = []
        for key, records in self.segments:
            name = _part_name(key, self._wal_tag)
            for record in records:
                for day, piece in _split_by_day(record, column):
                    if (_partition_name(day), name) in seen:
                        continue  # flushed, and that file was read
                    stamps = piece.columns[column]
                    rows = [
                        i
                        for i, stamp in enumerate(stamps)
                        if (low is None or stamp > low) and (high is None or stamp <= high)
                    ]
                    if len(rows) == len(stamps):
                        found.append(piece)
                    elif rows:
                        found.append(piece.take(rows))
        return found

    def _resolve(self, directory: Path, files: list[Path]) -> list[Path]:
        names = {f.name for f in files}
        dropped: set[str] = set()
        for journal in self._journals.get(directory.name, []):
            if journal.output in names:
                dropped.update(journal.inputs)
            elif not set(journal.inputs) <= names:
                message = f"{directory}: a merge ({journal.path.name}) is midway"
                if not self._lenient:
                    raise _Retry(message)
                logger.warning("%s and its output is not visible; reading what is there", message)
        return [f for f in files if f.name not in dropped]


def _read_generation(directory: Path) -> int:
    try:
        return int((directory / _GENERATION).read_bytes().strip() or b"0")
    except FileNotFoundError:
        return 0
    except ValueError:
        logger.warning("%s is damaged; counting merges from 0", directory / _GENERATION)
        return 0


def _read_journals(directory: Path) -> list[_Journal]:
    try:
        entries = [e for e in os.scandir(directory) if e.name.endswith(_JOURNAL)]
    except FileNotFoundError:
        return []
    journals: list[_Journal] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            body = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            continue  # the merge finished while we looked
        except orjson.JSONDecodeError as exc:
            logger.warning("ignoring %s: not a merge journal (%s)", path, exc)
            continue
        journal = _journal(path, body)
        if journal is None:
            logger.warning("ignoring %s: not a merge journal", path)
        else:
            journals.append(journal)
    return journals


def _journal(path: Path, body: Any) -> _Journal | None:
    if not isinstance(body, dict):
        return None
    partition, inputs, output = body.get("partition"), body.get("inputs"), body.get("output")
    names = [output, *inputs] if isinstance(inputs, list) else []
    plain = all(isinstance(n, str) and _PART.match(n) for n in names)
    if not (isinstance(partition, str) and partition.startswith(_PARTITION) and "/" not in partition):
        return None
    if not names or not plain:
        return None
    return _Journal(path, partition, tuple(inputs), output)  # type: ignore[arg-type]


# -- compaction ------------------------------------------------------------------------------------


def _plan_merge(
    files: Sequence[tuple[str, int]], mergeable: Callable[[str, int], bool]
) -> list[str]:
    """The neighbouring files to merge next in a partition (name order), or none.

    First choice: the lowest tier that holds `_FAN_IN` neighbours. Past `_MAX_FILES` files:
    the `_FAN_IN` neighbours smallest together. Never a file of `_FINAL_BYTES` or more.
    """
    usable = [mergeable(name, size) and size < _FINAL_BYTES for name, size in files]
    runs: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    for (name, size), ok in zip(files, usable, strict=True):
        if ok and current and _tier(size) == _tier(current[-1][1]):
            current.append((name, size))
            continue
        if len(current) >= _FAN_IN:
            runs.append(current)
        current = [(name, size)] if ok else []
    if len(current) >= _FAN_IN:
        runs.append(current)
    if runs:
        chosen = min(runs, key=lambda run: _tier(run[0][1]))
        return _capped(chosen)
    if len(files) <= _MAX_FILES:
        return []
    best: list[tuple[str, int]] = []
    for first in range(len(files) - _FAN_IN + 1):
        if not all(usable[first : first + _FAN_IN]):
            continue
        window = list(files[first : first + _FAN_IN])
        if not best or sum(s for _n, s in window) < sum(s for _n, s in best):
            best = window
    return _capped(best) if best else []


def _tier(size: int) -> int:
    if size < _TIER_FLOOR:
        return 0
    return 1 + int(math.log(size / _TIER_FLOOR, _TIER_RATIO))


def _capped(run: Sequence[tuple[str, int]]) -> list[str]:
    picked: list[str] = []
    total = 0
    for name, size in run:
        if len(picked) >= 2 and (len(picked) >= _MAX_MERGE_FILES or total + size > _MAX_MERGE_BYTES):
            break
        picked.append(name)
        total += size
    return picked


def _unified_schema(schemas: Sequence[Any]) -> Any:
    """One schema for files logged with different columns or types (as DuckDB would unify them)."""
    import pyarrow as pa

    types: dict[str, list[Any]] = {}
    for schema in schemas:
        for field in schema:
            types.setdefault(field.name, []).append(field.type)
    return pa.schema([pa.field(name, _unified_type(found)) for name, found in types.items()])


def _unified_type(types: Sequence[Any]) -> Any:
    import pyarrow as pa

    known = [t for t in types if not pa.types.is_null(t)]
    if not known:
        return pa.float64()
    if all(t == known[0] for t in known):
        return known[0]
    if all(pa.types.is_timestamp(t) for t in known):
        return pa.timestamp("us")
    if all(pa.types.is_integer(t) for t in known):
        return pa.int64()
    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    if all(any(test(t) for test in numeric) for t in known):
        return pa.float64()
    return pa.string()


def _conform(table: Any, schema: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: list[Any] = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            if column.type != field.type:
                column = pc.cast(column, field.type, safe=False)
        else:
            column = pa.chunked_array([pa.nulls(table.num_rows, field.type)])
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _write_merged(paths: Sequence[Path], schema: Any, final: Path, tag: str) -> None:
    """Write the inputs, in order, as one file (temp name, fsync, rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _atomic(final, tag) as handle:
        writer = pq.ParquetWriter(handle, schema)
        try:
            buffered: list[Any] = []
            rows = 0
            for path in paths:
                table = _conform(pq.ParquetFile(path).read(), schema)
                buffered.append(table)
                rows += table.num_rows
                if rows >= _ROW_GROUP:
                    writer.write_table(pa.concat_tables(buffered).combine_chunks(), _ROW_GROUP)
                    buffered, rows = [], 0
            if buffered:
                writer.write_table(pa.concat_tables(buffered).combine_chunks(), _ROW_GROUP)
        finally:
            writer.close()


def _sized_files(directory: Path) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for path in _parquet_files(directory):
        size = _size(path)
        if size >= 0:
            found.append((path.name, size))
    return found


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _part_name(key: str, tag: str) -> str:
    return f"part-{key}-{tag}.parquet"


def _part_key(name: str) -> str:
    match = _PART.match(name)
    if match is None:  # _plan_merge only picks names that match
        raise DataError(f"{name} is not a prediction log file name")
    return match.group(1)


def _partition_name(day: int) -> str:
    return f"{_PARTITION}{(_EPOCH_DAY + timedelta(days=day)).isoformat()}"


def _write_table(table: Any, final: Path, tag: str | None) -> None:
    """Write an Arrow table at `final` atomically (temp, fsync, rename); the caller fsyncs the dir.

    The temp file carries the writer's tag, so recovery knows whose it is; untagged ones (from
    `append_predictions`) are removed only once they are old.
    """
    import pyarrow.parquet as pq

    with _atomic(final, tag) as handle:
        pq.write_table(table, handle)


def _write_bytes(final: Path, data: bytes, tag: str) -> None:
    with _atomic(final, tag) as handle:
        handle.write(data)


@contextmanager
def _atomic(final: Path, tag: str | None) -> Iterator[BinaryIO]:
    """A file that appears at `final` whole or not at all: written under a hidden temp name
    (tagged with its writer, so recovery knows whose it is), fsynced, then renamed. The caller
    fsyncs the directory."""
    temporary = final.parent / (f".{final.name}.{tag}.tmp" if tag else f".{final.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
