"""The prediction log's write-ahead log: durability, group commit, flush, recovery, compaction."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelloop.errors import DataError, ModelloopError
from modelloop.store import LoggedRequest, MemoryLogStore, ParquetLogStore, check_log_store, wal
from modelloop.store import parquet as parquet_module
from modelloop.store.checks import logged_request

COLUMNS = {"id_column": "flight_id", "timestamp_column": "sched_dep", "target_column": "delayed"}
DAY = datetime(2013, 3, 1)
SRC = str(Path(parquet_module.__file__).parents[2])
posix_only = pytest.mark.skipif(os.name != "posix", reason="flock, SIGKILL and /proc are POSIX")


def parquet_store(root: Path, **options: Any) -> ParquetLogStore:
    options.setdefault("flush_interval", 3600)  # tests flush by hand unless they say otherwise
    # In-process unless a test says otherwise: many patch the module, which a worker would not see
    # (tests/store/test_flush_worker.py covers the worker).
    options.setdefault("flush_in_worker", False)
    return ParquetLogStore(root, "flights", **COLUMNS, **options)


def request(store: Any, name: str, rows: int = 2, day: int = 0, **options: Any) -> LoggedRequest:
    ids = [f"{name}-{i}" for i in range(rows)]
    stamps = [DAY + timedelta(days=day, minutes=i) for i in range(rows)]
    return logged_request(store, name, ids, stamps, **options)


def base(root: Path) -> Path:
    return root / "predictions" / "flights"


def parquet_files(root: Path) -> list[Path]:
    return sorted(base(root).glob("date=*/*.parquet"))


def segments(root: Path) -> list[Path]:
    return sorted(base(root).glob("_wal/*/*.wal"))


def unflushed(root: Path) -> list[Path]:
    """Segments holding records (a live writer always has an open, possibly empty, segment)."""
    return [s for s in segments(root) if s.stat().st_size > len(wal.MAGIC)]


def duckdb_rows(root: Path) -> list[tuple[str, str]]:
    """(flight_id, _request_id) of every row in the Parquet files, read by DuckDB alone."""
    files = [str(f) for f in parquet_files(root)]
    if not files:
        return []
    sql = (
        "SELECT CAST(flight_id AS VARCHAR), _request_id FROM read_parquet(?, union_by_name = true,"
        " hive_partitioning = false)"
    )
    return [(str(a), str(b)) for a, b in duckdb.connect().execute(sql, [files]).fetchall()]


def ids_read(store: ParquetLogStore) -> list[str]:
    return sorted(str(v) for v in store.read_predictions()["flight_id"].tolist())


def stray_files(root: Path) -> list[str]:
    """Temp files anywhere under the prediction log."""
    return sorted(str(p) for p in base(root).rglob(".*"))


def die(store: ParquetLogStore) -> None:
    """Leave the store as a SIGKILL would: its segments in place and its lock free."""
    assert store._writer is not None
    store._stop.set()
    store._closed = True
    store._drop_pool()  # a SIGKILL'd server's worker exits too (see test_flush_worker.py)
    store._writer.abandon()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = parquet_store(tmp_path)
    yield opened
    opened.close()


# -- reads before and after a flush -----------------------------------------------------------


def test_rows_are_readable_from_another_store_before_any_flush(store: ParquetLogStore) -> None:
    store.append_requests([request(store, "a"), request(store, "b", rows=1, day=1)])
    other = parquet_store(store.root)
    assert ids_read(other) == ["a-0", "a-1", "b-0"]
    assert parquet_files(store.root) == []  # nothing flushed yet: read from the WAL
    assert other.latest_prediction_time() == DAY + timedelta(days=1)
    assert other.prediction_files() == []  # Parquet only, documented


def test_flush_moves_rows_into_parquet_and_removes_the_segment(store: ParquetLogStore) -> None:
    store.append_requests([request(store, "a", day=0), request(store, "b", day=1)])
    (segment,) = segments(store.root)
    store.flush()
    assert not segment.exists()
    files = parquet_files(store.root)
    assert [f.parent.name for f in files] == ["date=2013-03-01", "date=2013-03-02"]
    key = segment.name.removesuffix(".wal")
    assert {f.name for f in files} == {f"part-{key}-wal.parquet"}  # named after the segment
    assert sorted(a for a, _b in duckdb_rows(store.root)) == ["a-0", "a-1", "b-0", "b-1"]
    assert ids_read(parquet_store(store.root)) == ["a-0", "a-1", "b-0", "b-1"]
    for directory in base(store.root).glob("date=*"):
        assert all(f.suffix == ".parquet" for f in directory.iterdir())  # only Parquet there


def test_parquet_column_types(store: ParquetLogStore) -> None:
    features = {"distance": [1.0, None], "carrier": ["AA", None], "empty": [None, None], "n": [1, 2]}
    ids, stamps = [7, 8], [DAY, DAY + timedelta(hours=1)]
    store.append_requests([logged_request(store, "r", ids, stamps, features=features)])
    store.flush()
    (written,) = parquet_files(store.root)
    schema = pq.read_schema(written)
    assert schema.field("flight_id").type == pa.int64()
    assert schema.field("sched_dep").type == pa.timestamp("us")
    assert schema.field("_served_at").type == pa.timestamp("us")
    assert schema.field("_prediction").type == pa.float64()
    assert schema.field("_model_version").type == pa.int64()
    assert schema.field("_request_id").type == pa.string()
    assert schema.field("distance").type == pa.float64()
    assert schema.field("carrier").type == pa.string()
    assert schema.field("empty").type == pa.float64()  # all null
    assert schema.field("n").type == pa.float64()  # numbers are float64
    assert schema.names[-4:] == ["_prediction", "_model_version", "_request_id", "_served_at"]


def test_one_string_id_makes_the_files_id_column_text(store: ParquetLogStore) -> None:
    store.append_requests([logged_request(store, "r", [1, "UA-2"], [DAY, DAY])])
    store.flush()
    (written,) = parquet_files(store.root)
    assert pq.read_schema(written).field("flight_id").type == pa.string()
    assert sorted(store.read_predictions()["flight_id"].tolist()) == ["1", "UA-2"]


def test_files_with_other_columns_and_types_read_together(store: ParquetLogStore) -> None:
    from modelloop.store.checks import predictions_frame

    store.append_predictions(predictions_frame(store, [1, 2], [DAY, DAY]))  # pandas, ns times
    store.append_requests([logged_request(store, "a", [3], [DAY], features={"temperature": [3.5]})])
    store.append_requests([logged_request(store, "b", ["x"], [DAY], features={"carrier": [None]})])
    store.flush()
    got = store.read_predictions()
    assert sorted(str(v) for v in got["flight_id"]) == ["1", "2", "3", "x"]
    assert sorted(got["temperature"].dropna().tolist()) == [3.5]


def test_aware_and_numpy_values_are_stored_as_naive_utc(store: ParquetLogStore) -> None:
    import numpy as np
    import pandas as pd

    aware = pd.Timestamp("2013-03-01 12:00", tz="America/New_York").to_pydatetime()
    columns = {
        "flight_id": np.array([5]),
        "sched_dep": [aware],
        "distance": np.array([2.5]),
        "carrier": pd.Series(["AA"]),
        "departed": np.array(["2013-03-01T18:00"], dtype="datetime64[ns]"),
    }
    store.append_requests([LoggedRequest("np", 3, aware, columns, np.array([0.75]))])
    for _ in range(2):
        got = store.read_predictions()
        assert got["sched_dep"].tolist() == [pd.Timestamp("2013-03-01 17:00")]
        assert got["_served_at"].tolist() == [pd.Timestamp("2013-03-01 17:00")]
        assert got["flight_id"].tolist() == [5] and got["_prediction"].tolist() == [0.75]
        assert got["departed"].tolist() == ["2013-03-01T18:00:00"]  # another time: kept as text
        store.flush()


def test_bad_values_are_refused_before_anything_is_written(store: ParquetLogStore) -> None:
    bad = request(store, "bad")
    bad = LoggedRequest("bad", 1, bad.served_at, {**bad.columns, "distance": [object(), 1.0]}, [0.1, 0.2])
    with pytest.raises(DataError, match="'bad'"):
        store.append_requests([request(store, "good"), bad])
    reserved = request(store, "reserved")
    reserved = LoggedRequest("reserved", 1, reserved.served_at, {**reserved.columns, "_prediction": [1, 2]},
                             [0.1, 0.2])
    with pytest.raises(DataError, match="_prediction"):
        store.append_requests([reserved])
    with pytest.raises(DataError, match="not a number"):
        store.append_requests([LoggedRequest("p", 1, DAY, request(store, "p").columns, ["x", 1.0])])
    assert store.read_predictions().empty and segments(store.root) == []


# -- durability and group commit ---------------------------------------------------------------


def wal_fsyncs(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> list[int]:
    """Count fsyncs of WAL segments (patched os.fsync); `delay` makes each one slow."""
    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc to name the synced descriptors")
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if os.readlink(f"/proc/self/fd/{descriptor}").endswith(".wal"):
            synced.append(descriptor)
            time.sleep(delay)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@posix_only
def test_one_fsync_covers_every_request_of_a_call(
    store: ParquetLogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append_requests([request(store, "warm")])  # opens the segment
    synced = wal_fsyncs(monkeypatch)
    store.append_requests([request(store, f"r{i}") for i in range(5)])
    assert len(synced) == 1
    assert len(store.read_predictions()) == 12


@posix_only
def test_group_commit_lets_one_fsync_cover_concurrent_callers(
    store: ParquetLogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append_requests([request(store, "warm")])
    synced = wal_fsyncs(monkeypatch, delay=0.02)
    callers = 16
    barrier = threading.Barrier(callers)
    errors: list[BaseException] = []

    def serve(worker: int) -> None:
        try:
            barrier.wait(timeout=10)
            store.append_requests([request(store, f"w{worker}", rows=1)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(w,)) for w in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert len(synced) <= 4, f"{len(synced)} fsyncs for {callers} concurrent calls"
    assert len(store.read_predictions()) == 2 + callers


@posix_only
def test_a_failed_write_is_reported_and_the_log_goes_on(
    store: ParquetLogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append_requests([request(store, "before")])
    real_fsync = os.fsync

    def failing(descriptor: int) -> None:
        if os.readlink(f"/proc/self/fd/{descriptor}").endswith(".wal"):
            raise OSError(5, "Input/output error")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(ModelloopError, match="Input/output error"):
        store.append_requests([request(store, "failed")])
    monkeypatch.undo()
    store.append_requests([request(store, "after")])  # a fresh segment
    store.flush()
    got = ids_read(store)
    assert {"before-0", "before-1", "after-0", "after-1"} <= set(got)
    # The failed request may show up (its bytes may have reached the disk), never half of it.
    assert len(got) in (4, 6) and len(got) == len(set(got)) and unflushed(store.root) == []


def test_a_segment_is_deleted_only_after_its_files_are_durable(
    store: ParquetLogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append_requests([request(store, "a", day=0), request(store, "b", day=1)])
    (segment,) = segments(store.root)
    events: list[tuple[str, str]] = []
    real_fsync_dir, real_unlink = parquet_module._fsync_dir, Path.unlink

    def fsync_dir(directory: Path) -> None:
        events.append(("fsync", directory.name))
        real_fsync_dir(directory)

    def unlink(path: Path, missing_ok: bool = False) -> None:
        events.append(("unlink", path.name))
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(parquet_module, "_fsync_dir", fsync_dir)
    monkeypatch.setattr(Path, "unlink", unlink)
    store.flush()
    deleted = events.index(("unlink", segment.name))
    assert ("fsync", "date=2013-03-01") in events[:deleted]
    assert ("fsync", "date=2013-03-02") in events[:deleted]
    assert events[deleted + 1] == ("fsync", segment.parent.name)


def test_the_flusher_moves_rows_on_its_own(tmp_path: Path) -> None:
    store = parquet_store(tmp_path, flush_interval=0.05)
    try:
        store.append_requests([request(store, "a")])
        deadline = time.monotonic() + 10
        while (segments(tmp_path) and not parquet_files(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        assert parquet_files(tmp_path), "the flusher never ran"
        assert unflushed(tmp_path) == []
        assert ids_read(store) == ["a-0", "a-1"]
    finally:
        store.close()


def test_close_moves_everything_and_leaves_no_wal_and_no_temp_file(tmp_path: Path) -> None:
    store = parquet_store(tmp_path)
    store.append_requests([request(store, "a"), request(store, "b", day=2)])
    store.close()
    store.close()
    assert segments(tmp_path) == []
    assert sorted(p.name for p in (base(tmp_path) / "_wal").iterdir()) == ["ids"]
    assert stray_files(tmp_path) == []
    assert sorted(a for a, _b in duckdb_rows(tmp_path)) == ["a-0", "a-1", "b-0", "b-1"]
    with pytest.raises(ModelloopError, match="closed"):
        store.append_requests([request(store, "late")])


def test_the_flush_interval_is_seconds_or_a_duration(tmp_path: Path) -> None:
    assert parquet_store(tmp_path, flush_interval=timedelta(seconds=10)).flush_interval == 10.0
    assert parquet_store(tmp_path, flush_interval=0.5).flush_interval == 0.5
    with pytest.raises(ModelloopError, match="flush interval"):
        parquet_store(tmp_path, flush_interval=0)


def test_segment_ids_only_grow_even_when_the_clock_steps_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path.mkdir(exist_ok=True)
    first = wal.allocate_segment_id(tmp_path)
    monkeypatch.setattr(wal.time, "time_ns", lambda: 1_000_000_000)  # 1970
    second = wal.allocate_segment_id(tmp_path)
    third = wal.allocate_segment_id(tmp_path)
    assert first < second < third
    assert wal.segment_id(wal.segment_key(third)) == third


# -- torn and corrupt records -----------------------------------------------------------------


def test_a_torn_tail_is_ignored_at_every_cut() -> None:
    payloads = [b'{"a":1}', b"x" * 300, b'{"c":[1,2,3]}']
    data = wal.MAGIC + b"".join(wal.encode_record(p) for p in payloads)
    ends = [len(wal.MAGIC)]
    for payload in payloads:
        ends.append(ends[-1] + 8 + len(payload))
    for cut in range(len(data) + 1):
        records, ignored = wal.decode_records(data[:cut], Path("segment"))
        whole = sum(1 for end in ends[1:] if end <= cut)
        assert records == payloads[:whole], cut
        assert ignored == (cut - ends[whole] if cut >= len(wal.MAGIC) else 0)
    flipped = bytearray(data)
    flipped[ends[1] + 20] ^= 0x40  # inside the second payload: its CRC fails
    assert wal.decode_records(bytes(flipped), Path("segment"))[0] == payloads[:1]
    zeros = data + b"\x00" * 64  # a file extended with zeros by a crash
    assert wal.decode_records(zeros, Path("segment"))[0] == payloads


def test_a_torn_tail_in_a_dead_writers_segment_is_ignored(tmp_path: Path) -> None:
    dead = parquet_store(tmp_path)
    dead.append_requests([request(dead, "a"), request(dead, "b")])
    die(dead)
    (segment,) = segments(tmp_path)
    whole = wal.encode_record(b'{"r":"torn"}' * 10)
    with open(segment, "ab") as handle:
        handle.write(whole[: len(whole) // 2])
    reader = parquet_store(tmp_path)
    assert ids_read(reader) == ["a-0", "a-1", "b-0", "b-1"]
    assert reader.recover() == 4
    assert reader.recover() == 0
    assert ids_read(reader) == ["a-0", "a-1", "b-0", "b-1"]
    reader.close()
    assert segments(tmp_path) == [] and stray_files(tmp_path) == []


def test_a_segment_that_is_not_a_segment_is_set_aside(tmp_path: Path) -> None:
    dead = parquet_store(tmp_path)
    dead.append_requests([request(dead, "a")])
    die(dead)
    (segment,) = segments(tmp_path)
    segment.write_bytes(b"something else entirely")
    reader = parquet_store(tmp_path)
    assert reader.read_predictions().empty
    assert reader.recover() == 0
    assert segment.with_name(segment.name + ".corrupt").exists()  # kept for a person
    reader.close()


# -- recovery ---------------------------------------------------------------------------------


def run_and_kill(code: str, root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


@posix_only
def test_recover_replays_a_killed_writers_wal_exactly_once(tmp_path: Path) -> None:
    code = f"""
import os, signal
from datetime import datetime
from modelloop.store import LoggedRequest, ParquetLogStore
store = ParquetLogStore({str(tmp_path)!r}, "flights", id_column="flight_id",
                        timestamp_column="sched_dep", target_column="delayed", flush_interval=3600)
for i in range(3):
    columns = {{"flight_id": [i * 10, i * 10 + 1], "sched_dep": [datetime(2013, 3, 1 + i)] * 2,
               "distance": [1.0, 2.0]}}
    store.append_requests([LoggedRequest(f"r{{i}}", 1, datetime(2014, 1, 1), columns, [0.5, 0.5])])
os.kill(os.getpid(), signal.SIGKILL)
"""
    run_and_kill(code, tmp_path)
    assert len(segments(tmp_path)) == 1 and parquet_files(tmp_path) == []
    store = parquet_store(tmp_path)
    wanted = ["0", "1", "10", "11", "20", "21"]
    assert ids_read(store) == wanted  # a dead writer's rows are read from its WAL
    assert store.recover() == 6
    assert store.recover() == 0
    assert ids_read(store) == wanted
    assert sorted(a for a, _b in duckdb_rows(tmp_path)) == wanted
    assert segments(tmp_path) == []
    store.close()
    assert sorted(p.name for p in (base(tmp_path) / "_wal").iterdir()) == ["ids"]


def test_recover_leaves_a_live_writer_alone(store: ParquetLogStore) -> None:
    store.append_requests([request(store, "live")])
    other = parquet_store(store.root)
    assert other.recover() == 0
    assert len(segments(store.root)) == 1
    assert ids_read(other) == ["live-0", "live-1"]
    other.close()
    store.flush()
    assert ids_read(other) == ["live-0", "live-1"]


def test_a_replay_after_a_crash_midway_through_a_flush_writes_no_row_twice(tmp_path: Path) -> None:
    dead = parquet_store(tmp_path)
    dead.append_requests([request(dead, "a", day=0), request(dead, "b", day=1)])
    assert dead._writer is not None
    dead._writer.rotate()
    (segment,) = dead._writer.closed_segments()
    # The flush wrote the file of the first date, then the process died.
    real_write = parquet_module._write_table
    written: list[Path] = []

    def write_then_die(table: Any, final: Path, tag: str) -> None:
        if written:
            raise KeyboardInterrupt("killed")
        real_write(table, final, tag)
        written.append(final)

    parquet_module._write_table = write_then_die  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            dead._flush_segment(segment, dead._writer.writer)
    finally:
        parquet_module._write_table = real_write  # type: ignore[assignment]
    die(dead)
    assert len(parquet_files(tmp_path)) == 1 and segment.exists()
    reader = parquet_store(tmp_path)
    assert ids_read(reader) == ["a-0", "a-1", "b-0", "b-1"]  # half in Parquet, half in the WAL
    assert reader.recover() == 2  # only the date not written yet
    assert sorted(a for a, _b in duckdb_rows(tmp_path)) == ["a-0", "a-1", "b-0", "b-1"]
    reader.close()


def test_recover_removes_the_temp_files_of_dead_writers_only(tmp_path: Path) -> None:
    live = parquet_store(tmp_path)
    live.append_requests([request(live, "a")])
    live.flush()
    assert live._writer is not None
    partition = base(tmp_path) / "date=2013-03-01"
    dead_temp = partition / ".part-20130301T000000000000Z-wal.parquet.99999-0123456789ab.tmp"
    live_temp = partition / f".part-20130301T000000000001Z-wal.parquet.{live._writer.writer}.tmp"
    fresh_untagged = partition / ".part-20130301T000000000002Z-abc.parquet.tmp"
    old_untagged = partition / ".part-20130301T000000000003Z-abd.parquet.tmp"
    for path in (dead_temp, live_temp, fresh_untagged, old_untagged):
        path.write_bytes(b"PAR1")
    os.utime(old_untagged, (time.time() - 7200, time.time() - 7200))
    parquet_store(tmp_path).recover()
    assert not dead_temp.exists() and not old_untagged.exists()
    assert live_temp.exists() and fresh_untagged.exists()
    for path in (live_temp, fresh_untagged):
        path.unlink()
    live.close()


# -- consistent reads while the flusher works -------------------------------------------------


def test_reads_at_every_step_of_flushes_and_merges_count_each_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = parquet_store(tmp_path)
    reader = parquet_store(tmp_path)  # another process's view
    logged: list[str] = []
    seen: list[tuple[str, list[str]]] = []
    real_fsync_dir = parquet_module._fsync_dir
    busy = threading.Lock()

    def fsync_dir_then_read(directory: Path) -> None:
        real_fsync_dir(directory)
        if busy.acquire(blocking=False):  # not inside our own read
            try:
                seen.append((directory.name, ids_read(reader)))
                latest = reader.latest_prediction_time()
                assert latest == DAY + timedelta(days=1, minutes=1), latest
            finally:
                busy.release()

    monkeypatch.setattr(parquet_module, "_fsync_dir", fsync_dir_then_read)
    for flush in range(12):
        batch = [request(writer, f"f{flush}-a", rows=3, day=0), request(writer, f"f{flush}-b", day=1)]
        writer.append_requests(batch)
        logged.extend(f"f{flush}-a-{i}" for i in range(3))
        logged.extend(f"f{flush}-b-{i}" for i in range(2))
        before = len(seen)
        writer.flush()
        for step, got in seen[before:]:
            assert got == sorted(logged), f"flush {flush}, after syncing {step}"
    steps = {step for step, _got in seen}
    assert "_compaction" in steps  # reads happened in the middle of merges too
    assert len(parquet_files(tmp_path)) < 2 * 12
    writer.close()


def test_a_merge_that_finishes_during_a_read_makes_the_read_start_over(tmp_path: Path) -> None:
    writer = parquet_store(tmp_path)
    for flush in range(7):
        writer.append_requests([request(writer, f"f{flush}")])
        writer.flush()
    writer.append_requests([request(writer, "f7")])
    assert len(parquet_files(tmp_path)) == 7 and len(segments(tmp_path)) == 1
    reader = parquet_store(tmp_path)
    real_scan = parquet_module._scan_parquet
    scans: list[int] = []

    def scan(files, *args):  # type: ignore[no-untyped-def]
        scans.append(len(files))
        if len(scans) == 1:
            writer.flush()  # flush f7 and merge all 8 files under the reader's feet
            assert len(parquet_files(tmp_path)) == 1
        return real_scan(files, *args)

    parquet_module._scan_parquet = scan  # type: ignore[assignment]
    try:
        got = ids_read(reader)
    finally:
        parquet_module._scan_parquet = real_scan  # type: ignore[assignment]
    assert got == sorted(f"f{i}-{j}" for i in range(8) for j in range(2))
    assert scans[0] == 7 and scans[-1] == 1
    writer.close()


def test_a_segment_merged_between_the_wal_read_and_the_listing_is_not_counted_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = parquet_store(tmp_path)
    for flush in range(7):
        writer.append_requests([request(writer, f"f{flush}")])
        writer.flush()
    writer.append_requests([request(writer, "f7")])  # in the WAL when the reader looks
    reader = parquet_store(tmp_path)
    real_segments = ParquetLogStore._wal_segments
    reads: list[int] = []

    def segments_then_merge(self: ParquetLogStore) -> Any:
        found = real_segments(self)
        reads.append(len(found))
        if len(reads) == 1:
            writer.flush()  # f7 goes to Parquet and is merged before the reader lists files
        return found

    monkeypatch.setattr(ParquetLogStore, "_wal_segments", segments_then_merge)
    assert ids_read(reader) == sorted(f"f{i}-{j}" for i in range(8) for j in range(2))
    assert reads[0] == 1 and len(reads) >= 2  # read again: a merge started meanwhile
    writer.close()


def test_a_file_whose_segment_is_still_in_a_wal_is_never_merged(tmp_path: Path) -> None:
    live = parquet_store(tmp_path)
    for flush in range(7):
        live.append_requests([request(live, f"f{flush}")])
        live.flush()
    dead = parquet_store(tmp_path)
    dead.append_requests([request(dead, "d", day=0), request(dead, "e", day=1)])
    assert dead._writer is not None
    dead._writer.rotate()
    (segment,) = dead._writer.closed_segments()
    real_write = parquet_module._write_table

    def write_first_date_only(table: Any, final: Path, tag: str) -> None:
        if "2013-03-02" in str(final):
            raise KeyboardInterrupt("killed")
        real_write(table, final, tag)

    parquet_module._write_table = write_first_date_only  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            dead._flush_segment(segment, dead._writer.writer)
    finally:
        parquet_module._write_table = real_write  # type: ignore[assignment]
    die(dead)
    half = base(tmp_path) / "date=2013-03-01" / f"part-{segment.name.removesuffix('.wal')}-wal.parquet"
    assert half.exists()
    for flush in range(7, 9):  # the live writer's merges pass the dead writer's file by
        live.append_requests([request(live, f"f{flush}")])
        live.flush()
    assert half.exists()
    wanted = sorted([*(f"f{i}-{j}" for i in range(9) for j in range(2)), "d-0", "d-1", "e-0", "e-1"])
    assert ids_read(live) == wanted
    assert live.recover() == 2
    assert sorted(a for a, _b in duckdb_rows(tmp_path)) == wanted
    live.close()


CRASH_POINTS = ["generation", "journal", "output", "inputs deleted", "journal deleted"]


@pytest.mark.parametrize("crash_after", range(len(CRASH_POINTS)), ids=CRASH_POINTS)
@pytest.mark.parametrize("half_deleted", [False, True], ids=["", "half-deleted"])
def test_a_merge_interrupted_at_any_step_loses_and_doubles_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_after: int, half_deleted: bool
) -> None:
    writer = parquet_store(tmp_path)
    for flush in range(7):
        writer.append_requests([request(writer, f"f{flush}")])
        writer.flush()
    wanted = sorted(f"f{i}-{j}" for i in range(8) for j in range(2))
    real_fsync_dir = parquet_module._fsync_dir
    calls: list[Path] = []

    class Crash(BaseException):
        pass

    def fsync_dir(directory: Path) -> None:
        real_fsync_dir(directory)
        if directory.name == "_compaction" or calls:
            calls.append(directory)
            if len(calls) == crash_after + 1:
                raise Crash

    writer.append_requests([request(writer, "f7")])
    monkeypatch.setattr(parquet_module, "_fsync_dir", fsync_dir)
    with pytest.raises(Crash):
        writer.flush()  # f7 lands, then the merge of the 8 files dies
    monkeypatch.undo()
    partition = base(tmp_path) / "date=2013-03-01"
    journals = list((base(tmp_path) / "_compaction").glob("*.journal"))
    if half_deleted and journals:
        (journal,) = journals
        import orjson

        entry = orjson.loads(journal.read_bytes())
        if (partition / entry["output"]).exists():
            for name in entry["inputs"][:3]:
                (partition / name).unlink(missing_ok=True)
    reader = parquet_store(tmp_path)
    assert ids_read(reader) == wanted  # before anyone settles the merge
    assert reader.recover() == 0
    assert ids_read(reader) == wanted
    assert sorted(a for a, _b in duckdb_rows(tmp_path)) == wanted
    assert list((base(tmp_path) / "_compaction").glob("*.journal")) == []
    assert stray_files(tmp_path) == []
    reader.close()
    writer.close()


# -- compaction -------------------------------------------------------------------------------


def test_compaction_keeps_a_partition_at_a_handful_of_files(tmp_path: Path) -> None:
    store = parquet_store(tmp_path)
    flushes = 200
    for flush in range(flushes):
        store.append_requests([request(store, f"f{flush}", rows=2, day=flush % 2)])
        store.flush()
    counts = Counter(f.parent.name for f in parquet_files(tmp_path))
    assert set(counts) == {"date=2013-03-01", "date=2013-03-02"}
    assert max(counts.values()) <= 8, counts
    rows = duckdb_rows(tmp_path)
    assert len(rows) == 2 * flushes and len(set(rows)) == len(rows)
    got = store.read_predictions()
    assert len(got) == 2 * flushes and got["flight_id"].is_unique
    assert got["sched_dep"].is_monotonic_increasing
    assert list((base(tmp_path) / "_compaction").glob("*.journal")) == []
    store.close()
    assert stray_files(tmp_path) == []


def test_merged_rows_keep_their_logging_order_for_equal_timestamps(tmp_path: Path) -> None:
    store = parquet_store(tmp_path)
    for flush in range(20):
        store.append_requests([logged_request(store, f"r{flush}", [flush], [DAY])])
        store.flush()
    assert len(parquet_files(tmp_path)) < 20
    assert store.read_predictions()["flight_id"].tolist() == list(range(20))
    store.close()


def test_plan_merges_neighbours_in_a_tier_and_bounds_the_count() -> None:
    plan = parquet_module._plan_merge
    small = [(f"part-2013030{i % 10}T0000000000{i:02d}Z-wal.parquet", 10_000) for i in range(7)]
    assert plan(small, lambda n, s: True) == []  # fewer than 8 in the tier
    eight = [*small, ("part-20130309T000000000099Z-wal.parquet", 10_000)]
    assert plan(eight, lambda n, s: True) == [n for n, _s in eight]
    busy = eight[:3]  # still in a WAL: never merged, and it splits the neighbours
    assert plan(eight, lambda n, s: (n, s) not in busy) == []
    big = [(f"part-20130301T0000000001{i:02d}Z-m{i}.parquet", 3 << 20) for i in range(6)]
    mixed = [item for pair in zip(big, small[:6], strict=True) for item in pair]  # 12 alternating
    assert plan(mixed, lambda n, s: True) == []
    crowded = [*mixed, ("part-20130309T000000000099Z-wal.parquet", 10_000)]  # 13 files
    picked = plan(crowded, lambda n, s: True)
    assert len(picked) == 8
    names = [n for n, _s in crowded]
    first = names.index(picked[0])
    assert picked == names[first : first + 8]  # neighbours
    huge = [(f"part-20130301T0000000002{i:02d}Z-m{i}.parquet", 80 << 20) for i in range(20)]
    assert plan(huge, lambda n, s: True) == []  # never rewritten again


# -- the shared contract ----------------------------------------------------------------------


def test_check_suite_catches_an_adapter_that_drops_requests() -> None:
    class DropsTheLastRequest(MemoryLogStore):
        def append_requests(self, requests: Any) -> None:
            super().append_requests(list(requests)[:-1])

    with pytest.raises(AssertionError, match="DropsTheLastRequest"):
        check_log_store(lambda: DropsTheLastRequest("flights", **COLUMNS))


def test_check_suite_catches_an_adapter_that_turns_ids_into_text() -> None:
    class TextIds(MemoryLogStore):
        def append_requests(self, requests: Any) -> None:
            changed = []
            for r in requests:
                columns = {**r.columns, "flight_id": [str(v) for v in r.columns["flight_id"]]}
                changed.append(LoggedRequest(r.request_id, r.model_version, r.served_at, columns,
                                             r.predictions))
            super().append_requests(changed)

    with pytest.raises(AssertionError, match="TextIds"):
        check_log_store(lambda: TextIds("flights", **COLUMNS))


# -- killed at random moments -----------------------------------------------------------------


def start_writer(
    root: Path, prefix: str, where: str
) -> tuple[subprocess.Popen[bytes], queue.Queue[bytes | None]]:
    helper = Path(__file__).with_name("wal_crash_writer.py")
    env = {**os.environ, "PYTHONPATH": SRC}
    process = subprocess.Popen(
        [sys.executable, str(helper), str(root), prefix, "30", where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def children(pid: int) -> list[int]:
    """The processes `pid` started (the flush worker, multiprocessing's resource tracker)."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@posix_only
@pytest.mark.parametrize("where", ["worker", "in-process"])
def test_acknowledged_requests_survive_sigkill_at_random_moments(tmp_path: Path, where: str) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    acknowledged: set[str] = set()
    for run in range(3):
        process, lines = start_writer(tmp_path, f"run{run}", where)
        try:
            first = lines.get(timeout=120)
            assert first == b"ready\n", (first, process.stderr.read() if process.stderr else b"")
            # With a worker: often after it has started (a second or so), so it is killed mid-flush.
            time.sleep(rng.uniform(0.3, 2.0) + (rng.uniform(0, 1.5) if where == "worker" else 0))
            started = children(process.pid) if Path("/proc").is_dir() else []
            os.kill(process.pid, signal.SIGKILL)
            assert process.wait(timeout=60) == -signal.SIGKILL, f"seed {seed}: the writer stopped early"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)
        if where == "worker" and Path("/proc").is_dir():
            assert started, f"seed {seed}: the writer started no flush worker"
        deadline = time.monotonic() + 10
        while not all(exited(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(exited(pid) for pid in started), f"seed {seed}: a child outlived the killed writer"
        before = len(acknowledged)
        while (line := lines.get(timeout=60)) is not None:
            if line.endswith(b"\n"):  # a line cut by the kill was not acknowledged
                acknowledged.add(line.decode().strip())
        assert len(acknowledged) > before, f"seed {seed}: run {run} acknowledged nothing"

    store = parquet_store(tmp_path)
    store.recover()
    store.flush()
    store.close()

    for path in parquet_files(tmp_path):
        pq.ParquetFile(path).metadata  # noqa: B018 - every file is readable
    rows = duckdb_rows(tmp_path)
    assert len(rows) == len(set(rows)), f"seed {seed}: a row was written twice"
    by_request: dict[str, set[str]] = {}
    for flight, request_id in rows:
        by_request.setdefault(request_id, set()).add(flight)
    for request_id, flights in by_request.items():  # acknowledged or not: all rows or none
        count = int(request_id.rsplit("-", 1)[1])
        assert flights == {f"{request_id}-{i}" for i in range(count)}, f"seed {seed}: {request_id}"
    missing = acknowledged - set(by_request)
    assert not missing, f"seed {seed}: acknowledged but lost: {sorted(missing)[:5]}"
    assert stray_files(tmp_path) == [], f"seed {seed}"
    assert segments(tmp_path) == [] and list(base(tmp_path).glob("_wal/*/")) == []
    assert sorted(p.name for p in (base(tmp_path) / "_wal").iterdir()) == ["ids"]
    assert list((base(tmp_path) / "_compaction").glob("*.journal")) == []
    counts = Counter(f.parent.name for f in parquet_files(tmp_path))
    assert max(counts.values()) <= 12, counts
