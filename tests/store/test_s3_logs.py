"""The log store on S3-compatible storage, against moto's S3 server on loopback."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from modelloop.errors import ModelloopError
from modelloop.store import LogStore, check_log_store
from modelloop.store import wal as wal_module
from modelloop.store.checks import logged_request, predictions_frame
from modelloop.store.parquet import ParquetLogStore
from modelloop.store.s3 import S3Location, S3LogStore, StorageError
from tests.s3 import S3Server, s3_environment, s3_server

COLUMNS = {"id_column": "flight_id", "timestamp_column": "sched_dep", "target_column": "delayed"}
DAY = datetime(2013, 3, 1)


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as found, s3_environment(found):
        yield found


@pytest.fixture
def bucket(server: S3Server) -> str:
    return server.bucket()


def s3_store(bucket: str, cache: Path, **options: object) -> S3LogStore:
    return S3LogStore(f"s3://{bucket}/team/logs", cache, "flights", **COLUMNS, **options)  # type: ignore[arg-type]


def ids(store: LogStore) -> list[str]:
    return [str(v) for v in store.read_predictions()["flight_id"]]


def test_the_shared_contract_holds_on_s3(server: S3Server, tmp_path: Path) -> None:
    def make() -> LogStore:
        return s3_store(server.bucket(), tmp_path / uuid.uuid4().hex)

    check_log_store(make)


def test_appends_land_in_the_bucket_and_read_on_another_machine(
    server: S3Server, bucket: str, tmp_path: Path
) -> None:
    first = s3_store(bucket, tmp_path / "first")
    first.append_predictions(predictions_frame(first, [1, 2], [DAY, DAY + timedelta(days=1)]))
    first.append_labels(pd.DataFrame({"flight_id": [1], "delayed": [1]}))
    keys = server.keys(bucket, "team/logs/")
    assert [k.split("/")[:4] for k in keys] == [
        ["team", "logs", "labels", "flights"],
        ["team", "logs", "predictions", "flights"],
        ["team", "logs", "predictions", "flights"],
    ]
    assert {k.split("/")[4] for k in keys if "/predictions/" in k} == {
        "date=2013-03-01", "date=2013-03-02"
    }
    first.close()
    second = s3_store(bucket, tmp_path / "second")  # an empty cache: another machine
    assert ids(second) == ["1", "2"]
    assert second.latest_prediction_time() == DAY + timedelta(days=1)
    assert second.read_labels()["flight_id"].tolist() == [1]
    window = second.read_predictions(DAY + timedelta(hours=1), DAY + timedelta(days=2))
    assert window["flight_id"].tolist() == [2]
    second.close()


def test_a_read_downloads_only_the_partitions_in_its_window(bucket: str, tmp_path: Path) -> None:
    first = s3_store(bucket, tmp_path / "first")
    stamps = [DAY + timedelta(days=d) for d in range(5)]
    first.append_predictions(predictions_frame(first, list(range(5)), stamps))
    second = s3_store(bucket, tmp_path / "second")
    got = second.read_predictions(DAY + timedelta(days=2, hours=1), DAY + timedelta(days=3))
    assert got["flight_id"].tolist() == [3]
    cached = sorted(p.name for p in (tmp_path / "second" / "predictions" / "flights").iterdir())
    assert cached == ["date=2013-03-03", "date=2013-03-04"]  # not the three others


def test_wal_rows_reach_the_bucket_on_flush_and_close(
    server: S3Server, bucket: str, tmp_path: Path
) -> None:
    store = s3_store(bucket, tmp_path / "server", flush_interval=3600)
    store.append_requests([logged_request(store, "r1", [1, 2], [DAY, DAY])])
    assert server.keys(bucket, "team/logs/predictions/") == []  # acknowledged: on local disk
    store.flush()
    flushed = server.keys(bucket, "team/logs/predictions/")
    assert len(flushed) == 1 and re.search(r"-wal[0-9a-f]{12}\.parquet$", flushed[0]), flushed
    store.append_requests([logged_request(store, "r2", [3], [DAY + timedelta(days=1)])])
    store.close()
    assert len(server.keys(bucket, "team/logs/predictions/")) == 2
    other = s3_store(bucket, tmp_path / "other")
    assert ids(other) == ["1", "2", "3"]


def test_a_crash_between_upload_and_segment_deletion_stores_each_row_once(
    server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "server"
    store = s3_store(bucket, cache, flush_in_worker=False, flush_interval=3600)
    store.append_requests([logged_request(store, "r1", [1, 2], [DAY, DAY + timedelta(days=1)])])
    uploads: list[Path] = []
    original = S3LogStore._publish

    def publish_then_crash(self: S3LogStore, path: Path) -> None:
        original(self, path)
        uploads.append(path)
        if len(uploads) == 2:
            raise SystemExit("killed after the upload, before the segment is deleted")

    monkeypatch.setattr(S3LogStore, "_publish", publish_then_crash)
    with pytest.raises(SystemExit):
        store.flush()
    monkeypatch.setattr(S3LogStore, "_publish", original)
    assert len(server.keys(bucket, "team/logs/predictions/")) == 2
    assert wal_module.all_segments(store.wal_dir), "the segment outlived the crash"
    store._writer.abandon()  # type: ignore[union-attr]  # what a killed process leaves
    # A restart on the same machine replays the segment: same names, so nothing doubles.
    restarted = s3_store(bucket, cache, flush_in_worker=False)
    assert restarted.recover() == 0  # both files existed: written before the crash
    restarted.close()
    assert len(server.keys(bucket, "team/logs/predictions/")) == 2
    assert ids(s3_store(bucket, tmp_path / "elsewhere")) == ["1", "2"]


def test_a_segment_whose_upload_failed_is_uploaded_by_the_next_flush(
    server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3_store(bucket, tmp_path / "server", flush_in_worker=False, flush_interval=3600)
    store.append_requests([logged_request(store, "r1", [1], [DAY])])

    def outage(self: S3Location, local: Path, name: str) -> str:
        raise ModelloopError(f"cannot write {self.url_of(name)}: cannot connect")

    with monkeypatch.context() as patched:
        patched.setattr(S3Location, "put_file", outage)
        with pytest.raises(ModelloopError, match="cannot connect"):
            store.flush()
    assert server.keys(bucket, "team/logs/predictions/") == []
    assert ids(store) == ["1"], "the rows stay readable from the WAL meanwhile"
    store.close()
    assert len(server.keys(bucket, "team/logs/predictions/")) == 1
    assert ids(s3_store(bucket, tmp_path / "elsewhere")) == ["1"]


def test_a_failed_direct_append_leaves_nothing_behind(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3_store(bucket, tmp_path / "cache")

    def outage(self: S3Location, local: Path, name: str) -> str:
        raise ModelloopError(f"cannot write {self.url_of(name)}: cannot connect")

    monkeypatch.setattr(S3Location, "put_file", outage)
    with pytest.raises(ModelloopError, match=f"s3://{bucket}/team/logs/predictions/flights/"):
        store.append_predictions(predictions_frame(store, [1], [DAY]))
    monkeypatch.undo()
    assert store.read_predictions().empty


def test_shadow_logs_flushed_by_the_worker_stay_in_their_own_tree(
    server: S3Server, bucket: str, tmp_path: Path
) -> None:
    store = s3_store(bucket, tmp_path / "cache", kind="shadow")
    store.append_requests([logged_request(store, "r1", [1], [DAY])])
    store.flush()  # in the flush worker (close() flushes in this process)
    store.close()
    keys = server.keys(bucket, "team/logs/")
    assert len(keys) == 1 and keys[0].startswith("team/logs/shadow/flights/date=2013-03-01/")


def test_parquet_worker_flushes_shadow_rows_into_the_shadow_tree(tmp_path: Path) -> None:
    store = ParquetLogStore(tmp_path, "flights", **COLUMNS, kind="shadow")
    store.append_requests([logged_request(store, "r1", [1], [DAY])])
    store.flush()  # in the flush worker (close() flushes in this process)
    store.close()
    assert not (tmp_path / "predictions").exists()
    assert len(list((tmp_path / "shadow" / "flights").glob("date=*/*.parquet"))) == 1


def test_a_missing_bucket_is_named(server: S3Server, tmp_path: Path) -> None:
    store = S3LogStore("s3://no-such-bucket-here/logs", tmp_path, "flights", **COLUMNS)
    with pytest.raises(ModelloopError, match="bucket 'no-such-bucket-here' not found"):
        store.read_predictions()
    with pytest.raises(ModelloopError, match="s3://no-such-bucket-here/logs"):
        store.append_predictions(predictions_frame(store, [1], [DAY]))


def test_an_endpoint_that_is_down_is_named(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.s3 import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    store = s3_store(bucket, tmp_path)
    with pytest.raises(ModelloopError, match=rf"s3://{bucket}/team/logs.*cannot connect to http://127\.0\.0\.1"):
        store.read_predictions()



def test_credentials_the_server_refuses_are_named(tmp_path: Path) -> None:
    with s3_server(authenticate=True) as refusing, s3_environment(refusing):
        store = S3LogStore("s3://team-bucket/logs", tmp_path, "flights", **COLUMNS)
        with pytest.raises(ModelloopError, match=r"s3://team-bucket/logs.*access denied.*AWS_ACCESS_KEY_ID"):
            store.read_predictions()


def test_a_flush_worker_that_cannot_upload_keeps_the_rows_and_says_why(
    server: S3Server, tmp_path: Path
) -> None:
    store = S3LogStore("s3://no-such-bucket-here/logs", tmp_path, "flights", **COLUMNS)
    store.append_requests([logged_request(store, "r1", [1], [DAY])])
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' not found") as raised:
        store.flush()  # in the worker process: its error comes back whole
    assert raised.value.trouble == "bucket not found"
    assert wal_module.all_segments(store.wal_dir), "the rows wait in the write-ahead log"
    with pytest.raises(StorageError):
        store.close()


def test_two_machines_flushing_the_same_segment_key_keep_both_rows(
    server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Segment keys are UTC microsecond stamps, unique under one folder only: two machines can
    # draw the same one. Here they always do.
    drawn: dict[Path, int] = {}

    def same_ids(root: Path) -> int:
        drawn[root] = drawn.get(root, 1_700_000_000_000_000) + 1
        return drawn[root]

    monkeypatch.setattr(wal_module, "allocate_segment_id", same_ids)
    for machine, row in (("a", 1), ("b", 2)):
        store = s3_store(bucket, tmp_path / machine, flush_in_worker=False)
        store.append_requests([logged_request(store, f"r{row}", [row], [DAY])])
        store.close()
    assert len(server.keys(bucket, "team/logs/predictions/")) == 2
    assert sorted(ids(s3_store(bucket, tmp_path / "reader"))) == ["1", "2"]
