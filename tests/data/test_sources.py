"""Data sources: Parquet/CSV files or globs, and a user's `module:function`; every failure is a
DataError that names the file and the column."""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from modelloop import DataError
from modelloop.data import FileSource, FunctionSource, open_source


def rows(count: int, start: str = "2024-01-01") -> pd.DataFrame:
    return pd.DataFrame({
        "flight_id": [f"F{i}" for i in range(count)],
        "sched_dep": pd.date_range(start, periods=count, freq="D"),
        "hour": [float(i % 24) for i in range(count)],
    })


def test_csv_timestamps_are_parsed_and_windows_are_right_closed(tmp_path: Path) -> None:
    rows(10).to_csv(tmp_path / "flights.csv", index=False)
    source = FileSource("flights.csv", tmp_path, "sched_dep")

    everything = source.load(None, None)
    assert len(everything) == 10
    assert pd.api.types.is_datetime64_any_dtype(everything["sched_dep"])

    window = source.load(datetime(2024, 1, 3), datetime(2024, 1, 6))
    assert window["flight_id"].tolist() == ["F3", "F4", "F5"]  # (Jan 3, Jan 6]
    assert source.latest_timestamp() == datetime(2024, 1, 10)


def test_parquet_files_load_the_same(tmp_path: Path) -> None:
    frame = rows(10)
    frame.to_parquet(tmp_path / "flights.parquet", index=False)
    loaded = FileSource("flights.parquet", tmp_path, "sched_dep").load(None, datetime(2024, 1, 2))
    assert loaded["flight_id"].tolist() == ["F0", "F1"]


def test_a_glob_reads_every_match_in_time_order(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    frame = rows(30)
    # Written out of order, and in both formats: the source sorts by time.
    frame.iloc[20:].to_parquet(tmp_path / "data" / "a.parquet", index=False)
    frame.iloc[:10].to_csv(tmp_path / "data" / "b.csv", index=False)
    frame.iloc[10:20].to_parquet(tmp_path / "data" / "c.parquet", index=False)
    source = open_source("data/*", tmp_path, "sched_dep")
    assert isinstance(source, FileSource)
    loaded = source.load(None, None)
    assert loaded["flight_id"].tolist() == [f"F{i}" for i in range(30)]
    assert source.latest_timestamp() == datetime(2024, 1, 30)


def test_new_rows_in_a_file_are_seen_on_the_next_load(tmp_path: Path) -> None:
    rows(5).to_parquet(tmp_path / "flights.parquet", index=False)
    source = FileSource("flights.parquet", tmp_path, "sched_dep")
    assert len(source.load(None, None)) == 5
    first = (tmp_path / "flights.parquet").stat().st_mtime
    rows(8).to_parquet(tmp_path / "flights.parquet", index=False)
    os.utime(tmp_path / "flights.parquet", (first + 60, first + 60))  # written a minute later
    assert len(source.load(None, None)) == 8


def test_timezone_aware_times_are_compared_in_utc(tmp_path: Path) -> None:
    frame = rows(2)
    frame["sched_dep"] = frame["sched_dep"].dt.tz_localize("America/New_York")
    frame.to_parquet(tmp_path / "flights.parquet", index=False)
    loaded = FileSource("flights.parquet", tmp_path, "sched_dep").load(None, None)
    assert loaded["sched_dep"].dt.tz is None
    assert loaded["sched_dep"].tolist() == [pd.Timestamp("2024-01-01 05:00"),
                                            pd.Timestamp("2024-01-02 05:00")]


def test_no_matching_file_names_the_pattern(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        FileSource("data/flights-*.parquet", tmp_path, "sched_dep").load(None, None)
    message = str(caught.value)
    assert "data.source" in message and "data/flights-*.parquet" in message


def test_a_missing_timestamp_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    rows(3).rename(columns={"sched_dep": "departure"}).to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(DataError) as caught:
        FileSource("f.csv", tmp_path, "sched_dep").load(None, None)
    message = str(caught.value)
    assert str(tmp_path / "f.csv") in message
    assert "'sched_dep' is missing" in message
    assert "departure" in message  # the columns it does have


def test_values_that_are_not_timestamps_name_the_file_column_and_row(tmp_path: Path) -> None:
    frame = rows(5).astype({"sched_dep": object})
    frame.loc[3, "sched_dep"] = "yesterday"
    frame.to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(DataError) as caught:
        FileSource("f.csv", tmp_path, "sched_dep").load(None, None)
    message = str(caught.value)
    assert str(tmp_path / "f.csv") in message
    assert "'sched_dep'" in message and "rows [3]" in message and "'yesterday'" in message


def test_a_damaged_parquet_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "f.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError) as caught:
        FileSource("f.parquet", tmp_path, "sched_dep").load(None, None)
    assert f"cannot read {tmp_path / 'f.parquet'}" in str(caught.value)


def test_a_file_of_another_kind_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "flights.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError) as caught:
        FileSource("flights.*", tmp_path, "sched_dep").load(None, None)
    message = str(caught.value)
    assert "flights.xlsx" in message and "neither Parquet nor CSV" in message


def test_times_with_different_utc_offsets_are_converted_to_utc(tmp_path: Path) -> None:
    pd.DataFrame({"sched_dep": ["2024-01-01T00:00:00+01:00", "2024-01-01T05:00:00-05:00"]}
                 ).to_csv(tmp_path / "f.csv", index=False)
    loaded = FileSource("f.csv", tmp_path, "sched_dep").load(None, None)
    assert loaded["sched_dep"].tolist() == [pd.Timestamp("2023-12-31 23:00"),
                                            pd.Timestamp("2024-01-01 10:00")]


def test_dates_and_date_times_can_share_a_column(tmp_path: Path) -> None:
    pd.DataFrame({"sched_dep": ["2024-01-01", "2024-01-01 12:30:00"]}).to_csv(
        tmp_path / "f.csv", index=False)
    loaded = FileSource("f.csv", tmp_path, "sched_dep").load(None, None)
    assert loaded["sched_dep"].tolist() == [pd.Timestamp("2024-01-01"),
                                            pd.Timestamp("2024-01-01 12:30")]


# -- module:function -------------------------------------------------------------------------


@pytest.fixture
def module_name() -> Iterator[str]:
    """A fresh module name per test, unloaded afterwards (the import cache is process-wide)."""
    name = f"user_rows_{uuid.uuid4().hex[:8]}"
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_a_function_is_imported_from_the_project_dir_and_windowed(
        tmp_path: Path, module_name: str, keep_sys_path: None) -> None:
    (tmp_path / f"{module_name}.py").write_text(textwrap.dedent("""
        import pandas as pd

        def load(start, end):
            # Ignores the bounds on purpose: the source must still window the rows.
            return pd.DataFrame({
                "flight_id": ["a", "b", "c"],
                "sched_dep": ["2024-01-01 10:00", "2024-01-02 10:00", "2024-01-03 10:00"],
            })
        """), encoding="utf-8")
    source = open_source(f"{module_name}:load", tmp_path, "sched_dep")
    assert isinstance(source, FunctionSource)
    loaded = source.load(datetime(2024, 1, 1, 10), datetime(2024, 1, 3))
    assert loaded["flight_id"].tolist() == ["b"]
    assert pd.api.types.is_datetime64_any_dtype(loaded["sched_dep"])
    assert source.latest_timestamp() == datetime(2024, 1, 3, 10)


def test_a_function_that_cannot_be_imported_is_named(
        tmp_path: Path, module_name: str, keep_sys_path: None) -> None:
    with pytest.raises(DataError) as caught:
        FunctionSource(f"{module_name}:load", tmp_path, "sched_dep").load(None, None)
    assert f"cannot import '{module_name}:load'" in str(caught.value)

    (tmp_path / f"{module_name}.py").write_text("def other(start, end):\n    return None\n",
                                                encoding="utf-8")
    with pytest.raises(DataError) as caught:
        FunctionSource(f"{module_name}:load", tmp_path, "sched_dep").load(None, None)
    assert "data.source" in str(caught.value) and "load" in str(caught.value)


def test_a_function_must_return_a_dataframe(
        tmp_path: Path, module_name: str, keep_sys_path: None) -> None:
    (tmp_path / f"{module_name}.py").write_text("def load(start, end):\n    return [1, 2]\n",
                                                encoding="utf-8")
    with pytest.raises(DataError) as caught:
        FunctionSource(f"{module_name}:load", tmp_path, "sched_dep").load(None, None)
    message = str(caught.value)
    assert f"{module_name}:load returned list" in message and "DataFrame" in message


def test_a_function_without_the_timestamp_column_is_named(
        tmp_path: Path, module_name: str, keep_sys_path: None) -> None:
    (tmp_path / f"{module_name}.py").write_text(
        "import pandas as pd\n\ndef load(start, end):\n    return pd.DataFrame({'t': [1]})\n",
        encoding="utf-8")
    with pytest.raises(DataError) as caught:
        FunctionSource(f"{module_name}:load", tmp_path, "sched_dep").load(None, None)
    assert f"{module_name}:load" in str(caught.value) and "'sched_dep'" in str(caught.value)


@pytest.mark.parametrize(("spec", "kind"), [
    ("flights.parquet", FileSource),
    ("data/*.csv", FileSource),
    ("/abs/path/flights.parquet", FileSource),
    ("flights:load", FunctionSource),
])
def test_open_source_tells_paths_from_functions(tmp_path: Path, spec: str, kind: type) -> None:
    assert isinstance(open_source(spec, tmp_path, "sched_dep"), kind)


def test_a_dotted_module_path_names_a_function(tmp_path: Path) -> None:
    # The project file's own comment advertises "package.module:function".
    source = open_source("my_project.data:load_flights", tmp_path, "sched_dep")
    assert isinstance(source, FunctionSource)
