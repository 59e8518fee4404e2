"""`LogStore.query` on the Parquet adapter: SQL where the files are, and a read that stays right
when a file is damaged or replaced under it (the shared semantics are in `check_log_store`)."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from modelloop.store import ParquetLogStore
from modelloop.store.checks import predictions_frame
from modelloop.store.logs import LogViews

DAY = datetime(2013, 3, 1)


def store_with_days(root: Path, days: int = 3) -> tuple[ParquetLogStore, pd.DataFrame]:
    store = ParquetLogStore(
        root, "flights", id_column="flight_id", timestamp_column="sched_dep", target_column="delayed"
    )
    stamps = [DAY + timedelta(days=d, hours=6 * h) for d in range(days) for h in range(4)]
    frame = predictions_frame(store, list(range(len(stamps))), stamps)
    for day in range(days):
        store.append_predictions(frame.iloc[day * 4 : day * 4 + 4])
    store.append_labels(pd.DataFrame({"flight_id": [1, 2], "delayed": [1, 0]}))
    return store, frame


def count(views: LogViews) -> tuple[int, int]:
    rows = views.connection.execute(f"SELECT count(*) FROM {views.predictions}").fetchone()
    labels = views.connection.execute(f"SELECT count(*) FROM {views.labels}").fetchone()
    return (int(rows[0]) if rows else -1, int(labels[0]) if labels else -1)


def test_a_damaged_file_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, frame = store_with_days(tmp_path)
    partition = tmp_path / "predictions" / "flights" / "date=2013-03-02"
    (partition / "part-99999999T999999999999Z-copied.parquet").write_bytes(b"PAR1\x00\x01")
    labels = next((tmp_path / "labels" / "flights").iterdir())
    (labels / "part-99999999T999999999999Z-copied.parquet").write_bytes(b"PAR1")
    with caplog.at_level(logging.WARNING, logger="modelloop.store.parquet"):
        assert store.query(None, None, count) == (len(frame), 2)
    assert caplog.text.count("part-99999999T999999999999Z-copied.parquet") == 2


def test_a_file_replaced_mid_query_is_read_again(tmp_path: Path) -> None:
    store, frame = store_with_days(tmp_path)
    partition = tmp_path / "predictions" / "flights" / "date=2013-03-02"
    attempts: list[int] = []

    def body(views: LogViews) -> tuple[int, int]:
        attempts.append(1)
        if len(attempts) == 1:  # what a compaction does meanwhile: same rows, another file
            (old,) = list(partition.glob("*.parquet"))
            shutil.copy(old, partition / "part-20990101T000000000000Z-m1.parquet")
            old.unlink()
        return count(views)

    assert store.query(DAY, DAY + timedelta(days=5), body) == (len(frame) - 1, 2)
    assert len(attempts) == 2
