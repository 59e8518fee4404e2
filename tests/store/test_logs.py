import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from modelloop.store import LogStore, MemoryLogStore, ParquetLogStore, check_log_store
from modelloop.store import parquet as parquet_module
from modelloop.store.checks import predictions_frame

COLUMNS = {"id_column": "flight_id", "timestamp_column": "sched_dep", "target_column": "delayed"}
DAY = datetime(2013, 3, 1)


def parquet_store(root: Path) -> ParquetLogStore:
    return ParquetLogStore(root, "flights", **COLUMNS)


@pytest.fixture(params=["memory", "parquet"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], LogStore]:
    if request.param == "memory":
        return lambda: MemoryLogStore("flights", **COLUMNS)
    count = iter(range(1000))
    return lambda: parquet_store(tmp_path / f"home-{next(count)}")


def test_adapter_keeps_the_shared_contract(make: Callable[[], LogStore]) -> None:
    check_log_store(make)


def test_adapter_satisfies_the_port(make: Callable[[], LogStore]) -> None:
    assert isinstance(make(), LogStore)


def test_aware_timestamps_are_logged_as_utc(make: Callable[[], LogStore]) -> None:
    store = make()
    frame = predictions_frame(store, [1], [DAY])
    frame["sched_dep"] = pd.to_datetime(["2013-03-01 12:00"]).tz_localize("America/New_York")
    store.append_predictions(frame)
    got = store.read_predictions()
    assert got["sched_dep"].dt.tz is None
    assert got["sched_dep"].tolist() == [pd.Timestamp("2013-03-01 17:00")]


def test_check_suite_catches_a_broken_adapter() -> None:
    class ForgetsLabels(MemoryLogStore):
        def read_labels(self) -> pd.DataFrame:
            return super().read_labels().iloc[0:0]

    with pytest.raises(AssertionError, match="ForgetsLabels"):
        check_log_store(lambda: ForgetsLabels("flights", **COLUMNS))


# -- Parquet adapter ---------------------------------------------------------------------------


def write_days(store: LogStore, days: int, per_day: int = 3) -> pd.DataFrame:
    stamps = [DAY + timedelta(days=d, hours=6 * h) for d in range(days) for h in range(per_day)]
    frame = predictions_frame(store, list(range(len(stamps))), stamps)
    store.append_predictions(frame)
    return frame


def partitions(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir())


def test_predictions_land_in_date_partitions_named_by_the_data(tmp_path: Path) -> None:
    store = parquet_store(tmp_path)
    write_days(store, 3)
    base = tmp_path / "predictions" / "flights"
    assert partitions(base) == ["date=2013-03-01", "date=2013-03-02", "date=2013-03-03"]
    for directory in base.iterdir():
        files = list(directory.iterdir())
        assert len(files) == 1 and files[0].name.startswith("part-")
        assert files[0].suffix == ".parquet"
        names = pq.read_schema(files[0]).names
        assert {"distance", "carrier", "flight_id", "sched_dep", "_prediction", "_model_version",
                "_request_id", "_served_at"} <= set(names)
        rows = pq.read_table(files[0]).to_pandas()
        assert (rows["sched_dep"].dt.strftime("date=%Y-%m-%d") == directory.name).all()


def test_labels_land_in_a_partition_of_the_day_they_arrived(tmp_path: Path) -> None:
    store = parquet_store(tmp_path)
    before = datetime.now(UTC).strftime("date=%Y-%m-%d")
    store.append_labels(pd.DataFrame({"flight_id": [1, 2], "delayed": [0, 1]}))
    after = datetime.now(UTC).strftime("date=%Y-%m-%d")
    base = tmp_path / "labels" / "flights"
    assert partitions(base) in ([before], [after])  # wall clock, not the data's time
    (written,) = list((base / partitions(base)[0]).iterdir())
    assert set(pq.read_schema(written).names) == {"flight_id", "delayed", "_received_at"}


def test_stray_temp_and_half_written_files_do_not_break_reads(tmp_path: Path) -> None:
    store = parquet_store(tmp_path)
    frame = write_days(store, 2)
    partition = tmp_path / "predictions" / "flights" / "date=2013-03-01"
    whole = next(partition.iterdir()).read_bytes()
    # What a writer killed mid-write leaves behind: a truncated file under its temp name.
    (partition / ".part-20130301T000000000000Z-dead.parquet.tmp").write_bytes(whole[:40])
    (partition / "garbage.tmp").write_bytes(b"PAR1")
    assert len(store.read_predictions()) == len(frame)
    assert len(store.read_predictions(DAY, DAY + timedelta(hours=12))) == 2
    assert store.latest_prediction_time() == frame["sched_dep"].max()


def test_a_truncated_parquet_file_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = parquet_store(tmp_path)
    frame = write_days(store, 2)
    # Copied in by hand, or written by a tool that does not rename atomically.
    partition = tmp_path / "predictions" / "flights" / "date=2013-03-02"
    (partition / "part-99999999T999999999999Z-copied.parquet").write_bytes(b"PAR1\x00\x01")
    with caplog.at_level(logging.WARNING, logger="modelloop.store.parquet"):
        got = store.read_predictions()
    assert len(got) == len(frame)
    assert "part-99999999T999999999999Z-copied.parquet" in caplog.text
    assert store.latest_prediction_time() == frame["sched_dep"].max()


def test_a_crash_before_the_rename_leaves_no_visible_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = parquet_store(tmp_path)
    before = write_days(store, 1)

    def crash(source: object, target: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr(parquet_module.os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        store.append_predictions(predictions_frame(store, [99], [DAY + timedelta(hours=1)]))
    monkeypatch.undo()
    partition = tmp_path / "predictions" / "flights" / "date=2013-03-01"
    assert [p.suffix for p in partition.iterdir()] == [".parquet"]
    assert store.read_predictions()["flight_id"].tolist() == before["flight_id"].tolist()


def test_appends_are_fsynced_before_they_return(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = parquet_store(tmp_path)
    write_days(store, 1)  # the directories exist now
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc to name the synced descriptors")
    monkeypatch.setattr(parquet_module.os, "fsync", fsync)
    store.append_predictions(predictions_frame(store, [7], [DAY + timedelta(hours=1)]))
    partition = str(tmp_path / "predictions" / "flights" / "date=2013-03-01")
    assert any(s.startswith(partition + "/.part-") for s in synced), synced  # the data
    assert partition in synced  # the rename


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_an_acknowledged_append_survives_the_process_being_killed(tmp_path: Path) -> None:
    code = f"""
import os, signal
from datetime import datetime
from modelloop.store import ParquetLogStore
from modelloop.store.checks import predictions_frame
store = ParquetLogStore({str(tmp_path)!r}, "flights", id_column="flight_id",
                        timestamp_column="sched_dep", target_column="delayed")
store.append_predictions(predictions_frame(store, [1, 2], [datetime(2013, 3, 1)] * 2))
store.append_labels(__import__("pandas").DataFrame({{"flight_id": [1], "delayed": [1]}}))
os.kill(os.getpid(), signal.SIGKILL)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(parquet_module.__file__).parents[2])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    store = parquet_store(tmp_path)
    assert store.read_predictions()["flight_id"].tolist() == [1, 2]
    assert store.read_labels()["flight_id"].tolist() == [1]


def test_reading_a_week_opens_only_that_weeks_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = parquet_store(tmp_path)
    frame = write_days(store, 60)
    opened: list[str] = []
    real_scan = parquet_module._scan_parquet

    def scan(files, *args):  # type: ignore[no-untyped-def]
        opened.extend(Path(f).parent.name for f in files)
        return real_scan(files, *args)

    monkeypatch.setattr(parquet_module, "_scan_parquet", scan)
    start, end = DAY + timedelta(days=10), DAY + timedelta(days=17)
    got = store.read_predictions(start, end)

    # (Mar 11 00:00, Mar 18 00:00]: Mar 11..17, plus Mar 18 for its midnight row.
    wanted = [f"date=2013-03-{d}" for d in range(11, 19)]
    assert sorted(opened) == wanted
    assert sorted({p.parent.name for p in store.prediction_files(start, end)}) == wanted
    stamps = frame["sched_dep"]
    in_window = frame.loc[(stamps > start) & (stamps <= end), "flight_id"]
    assert got["flight_id"].tolist() == in_window.tolist()


def test_latest_prediction_time_opens_only_the_newest_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = parquet_store(tmp_path)
    frame = write_days(store, 30)
    opened: list[str] = []
    real_scan = parquet_module._scan_parquet

    def scan(files, *args):  # type: ignore[no-untyped-def]
        opened.extend(Path(f).parent.name for f in files)
        return real_scan(files, *args)

    monkeypatch.setattr(parquet_module, "_scan_parquet", scan)
    assert store.latest_prediction_time() == frame["sched_dep"].max()
    assert opened == ["date=2013-03-30"]


def test_concurrent_appends_all_land(tmp_path: Path) -> None:
    store = parquet_store(tmp_path)

    def serve(worker: int) -> None:
        for batch in range(5):
            ids = [f"w{worker}-b{batch}-{i}" for i in range(3)]
            stamps = [DAY + timedelta(minutes=worker)] * 3
            store.append_predictions(predictions_frame(store, ids, stamps))

    threads = [threading.Thread(target=serve, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = store.read_predictions()
    assert len(got) == 8 * 5 * 3 and got["flight_id"].is_unique
    assert got["sched_dep"].is_monotonic_increasing


def test_relabel_across_store_objects_keeps_the_latest(tmp_path: Path) -> None:
    # The server and `modelloop labels ingest` each hold their own store on the same folder.
    first, second = parquet_store(tmp_path), parquet_store(tmp_path)
    first.append_labels(pd.DataFrame({"flight_id": [1, 2], "delayed": [0, 0]}))
    second.append_labels(pd.DataFrame({"flight_id": [2], "delayed": [1]}))
    labels = first.read_labels().set_index("flight_id")["delayed"].to_dict()
    assert labels == {1: 0, 2: 1}


def test_unstorable_values_name_the_problem(tmp_path: Path) -> None:
    from modelloop.errors import DataError

    store = parquet_store(tmp_path)
    frame = predictions_frame(store, [1, 2], [DAY, DAY])
    frame["distance"] = [1.0, object()]
    with pytest.raises(DataError, match="distance"):
        store.append_predictions(frame)
    assert store.read_predictions().empty
