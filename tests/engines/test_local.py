"""The local engine on the session's trained champion (`served_project`, in-memory registry)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelloop.data import Contract
from modelloop.engines import (
    LocalEngine,
    ScoreSummary,
    ScoringEngine,
    check_engine,
    get_engine,
)
from modelloop.engines.checks import read_rows, write_rows
from modelloop.errors import DataError, ModelloopError, UsageError
from modelloop.project import Project
from modelloop.serving.holder import ServedModel

SUFFIXES = [".parquet", ".csv", ".csv.gz"]


@pytest.fixture(scope="module")
def served(served_project: Project) -> ServedModel:
    return served_project.load_served_model()


class Recording:
    """The served model, recording each call's rows and the Arrow memory in use at that point."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model
        self.sizes: list[int] = []
        self.arrow_bytes: list[int] = []
        self.baseline = pa.total_allocated_bytes()

    @property
    def version(self) -> int:
        return self.model.version

    @property
    def contract(self) -> Contract:
        return self.model.contract

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.sizes.append(len(frame))
        self.arrow_bytes.append(pa.total_allocated_bytes() - self.baseline)
        return self.model.predict(frame)




def leftovers(folder: Path, *expected: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p not in expected)


def test_local_engine_passes_the_shared_checks(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    engine: ScoringEngine = LocalEngine()
    check_engine(engine, served, flights.head(120), tmp_path)


@pytest.mark.parametrize("source_suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("target_suffix", SUFFIXES)
def test_csv_and_parquet_in_and_out_give_the_served_numbers(
    served: ServedModel,
    flights: pd.DataFrame,
    tmp_path: Path,
    source_suffix: str,
    target_suffix: str,
) -> None:
    source = write_rows(flights, tmp_path / f"in{source_suffix}")
    target = tmp_path / f"out{target_suffix}"
    seen: list[tuple[int, int | None]] = []

    summary = LocalEngine().score(
        source, target, model=served, chunk_rows=700, progress=lambda d, t: seen.append((d, t))
    )

    assert (summary.rows, summary.chunks, summary.version) == (3000, 5, served.version)
    assert [done for done, _ in seen] == [0, 700, 1400, 2100, 2800, 3000]
    assert {total for _, total in seen} == ({3000} if source_suffix == ".parquet" else {None})
    scored = read_rows(target)
    assert list(scored.columns) == [*flights.columns, "_prediction", "_model_version"]
    assert scored["_prediction"].dtype == np.float64 and scored["_model_version"].dtype == np.int64
    assert (scored["_model_version"] == served.version).all()
    # The whole frame in one call, as the server's predict sees it: chunking changes nothing.
    np.testing.assert_allclose(scored["_prediction"], served.predict(flights), rtol=0, atol=1e-12)
    if source_suffix == target_suffix:
        pd.testing.assert_frame_equal(scored[list(flights.columns)], read_rows(source))
    assert leftovers(tmp_path, source, target) == []


def test_chunks_are_exact_whatever_the_csv_blocks(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    source = write_rows(flights, tmp_path / "in.csv")
    recording = Recording(served)

    # 1 KiB blocks hold about 14 rows: 700-row chunks are cut across many of them.
    LocalEngine(csv_block_bytes=1024).score(source, tmp_path / "out.parquet", model=recording, chunk_rows=700)

    assert recording.sizes == [700, 700, 700, 700, 200]
    scored = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_allclose(scored["_prediction"], served.predict(flights), rtol=0, atol=1e-12)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_memory_follows_the_chunk_not_the_file(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    big = pd.concat([flights] * 10, ignore_index=True)
    # 30,000 rows of 1 kB notes: about 30 MB once decoded, in one Parquet row group.
    big["notes"] = pd.Series([f"{i:07d}" + "x" * 993 for i in range(len(big))], dtype=object)
    source = tmp_path / f"big{suffix}"
    if suffix == ".parquet":
        big.to_parquet(source, index=False, row_group_size=len(big))
    else:
        big.to_csv(source, index=False)
    del big
    recording = Recording(served)

    summary = LocalEngine(csv_block_bytes=1 << 16).score(
        source, tmp_path / "out.parquet", model=recording, chunk_rows=1000
    )

    assert summary.rows == 30_000 and max(recording.sizes) == 1000
    assert max(recording.arrow_bytes) < 12_000_000, recording.arrow_bytes


def test_bad_value_in_chunk_3_names_the_row_and_leaves_no_output(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    bad = flights.astype({"distance": object})
    bad.loc[1499, "distance"] = "abc"  # data row 1500: the third chunk of 700 (rows 1401-2100)
    source = write_rows(bad, tmp_path / "in.csv")
    target = tmp_path / "out.parquet"
    recording = Recording(served)

    with pytest.raises(DataError) as error:
        LocalEngine().score(source, target, model=recording, chunk_rows=700)

    message = str(error.value)
    assert message.startswith(f"{source}: column 'distance' must hold numbers but holds text")
    assert "1 row(s) (rows 1500; e.g. 'abc')" in message
    assert "rows 1401-2100" in message and str(target) in message
    assert recording.sizes == [700, 700]  # two chunks scored, then the job stopped
    assert leftovers(tmp_path, source) == []


def test_a_forbidden_null_names_the_column_and_rows(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    bad = flights.copy()
    bad.loc[[1799, 1850], "hour"] = np.nan  # the contract does not let `hour` be null
    bad.loc[5, "temp"] = np.nan  # it lets `temp` be null
    source = write_rows(bad, tmp_path / "in.parquet")

    with pytest.raises(DataError) as error:
        LocalEngine().score(source, tmp_path / "out.csv", model=served, chunk_rows=700)

    assert (
        "column 'hour' has nulls, which the data contract does not allow: 2 row(s) (rows 1800, 1851)"
        in str(error.value)
    )
    assert "temp" not in str(error.value)
    assert leftovers(tmp_path, source) == []


def test_numeric_text_reads_as_pandas_reads_it(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    text = flights.head(50).astype({"distance": object, "temp": object})
    text.loc[0, "distance"] = " 1500.5 "
    text.loc[1, "distance"] = "2e3"
    text.loc[2, "temp"] = "NA"  # pandas' spelling of missing; `temp` may be null
    source = write_rows(text, tmp_path / "in.csv")

    LocalEngine().score(source, tmp_path / "out.csv", model=served, chunk_rows=20)

    scored = pd.read_csv(tmp_path / "out.csv")
    expected = served.predict(pd.read_csv(source))
    np.testing.assert_allclose(scored["_prediction"], expected, rtol=0, atol=1e-12)
    # The input's text is written back as it was read.
    written = (tmp_path / "out.csv").read_text().splitlines()
    assert " 1500.5 " in written[1] and ",2e3," in written[2]


def test_infinite_numbers_are_refused(served: ServedModel, flights: pd.DataFrame, tmp_path: Path) -> None:
    bad = flights.head(40).copy()
    bad.loc[30, "temp"] = np.inf
    source = write_rows(bad, tmp_path / "in.parquet")

    with pytest.raises(
        DataError,
        match=r"column 'temp' holds values that are not finite numbers: "
        r"1 row\(s\) \(rows 31; e\.g\. inf\)",
    ):
        LocalEngine().score(source, tmp_path / "out.parquet", model=served, chunk_rows=100)


def test_a_numeric_feature_of_another_type_is_named(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    source = write_rows(flights.head(20).assign(hour=flights["sched_dep"].head(20)), tmp_path / "in.parquet")

    with pytest.raises(DataError, match=r"column 'hour' holds timestamp\[.*\] values, not numbers\."):
        LocalEngine().score(source, tmp_path / "out.parquet", model=served, chunk_rows=10)


def test_text_is_quoted_only_where_it_needs_it(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    rows = flights.head(30).assign(note="plain")
    rows.loc[25, "note"] = 'a "quoted", two-line\nnote'  # in the third chunk of 10
    source = write_rows(rows, tmp_path / "in.csv")

    LocalEngine().score(source, tmp_path / "out.csv", model=served, chunk_rows=10)

    scored = pd.read_csv(tmp_path / "out.csv")
    assert scored["note"].tolist() == rows["note"].tolist()
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[1].startswith("F0-00000,2024-01-01 ") and ",plain," in lines[1]
    assert lines[21].startswith('"F0-00020","2024-01-01 ')


def test_missing_columns_are_named_in_one_message(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    source = write_rows(flights.drop(columns=["hour", "carrier"]), tmp_path / "in.parquet")

    with pytest.raises(DataError) as error:
        LocalEngine().score(source, tmp_path / "out.parquet", model=served, chunk_rows=700)

    assert str(error.value) == (f"{source}: 2 columns are missing: 'hour', 'carrier'; the model needs them")
    assert leftovers(tmp_path, source) == []


def test_an_existing_prediction_column_is_refused_not_overwritten(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    source = write_rows(flights.assign(_prediction=0.5), tmp_path / "in.csv")

    with pytest.raises(DataError, match=r"already has the column\(s\) '_prediction'"):
        LocalEngine().score(source, tmp_path / "out.csv", model=served, chunk_rows=700)
    assert leftovers(tmp_path, source) == []


def test_file_names_must_say_the_format(served: ServedModel, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"in\.txt: cannot tell the input's format"):
        LocalEngine().score(tmp_path / "in.txt", tmp_path / "out.csv", model=served, chunk_rows=10)
    with pytest.raises(DataError, match=r"in\.csv: no such file"):
        LocalEngine().score(tmp_path / "in.csv", tmp_path / "out.csv", model=served, chunk_rows=10)


def test_the_output_may_not_replace_the_input(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    source = write_rows(flights.head(10), tmp_path / "in.csv")
    before = source.read_bytes()
    with pytest.raises(DataError, match="would replace the input"):
        LocalEngine().score(source, source, model=served, chunk_rows=10)
    assert source.read_bytes() == before


def test_unreadable_input_names_the_file(served: ServedModel, tmp_path: Path) -> None:
    broken = tmp_path / "in.parquet"
    broken.write_text("not parquet")
    with pytest.raises(DataError, match=r"in\.parquet: cannot read it as Parquet"):
        LocalEngine().score(broken, tmp_path / "out.csv", model=served, chunk_rows=10)
    ragged = tmp_path / "in.csv"
    ragged.write_text("hour,distance,temp,carrier\n1,2,3,AA\n1,2,3,AA,5\n")
    with pytest.raises(DataError, match=r"in\.csv: cannot read it as CSV: .*Expected 4 columns, got 5"):
        LocalEngine().score(ragged, tmp_path / "out.csv", model=served, chunk_rows=10)
    assert leftovers(tmp_path, broken, ragged) == []


def test_lists_cannot_go_to_csv_and_say_so_before_scoring(
    served: ServedModel, flights: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "in.parquet"
    flights.head(20).assign(tags=[["a", "b"]] * 20).to_parquet(source, index=False)

    with pytest.raises(DataError, match=r"'tags' hold lists or structures, which a CSV cannot"):
        LocalEngine().score(source, tmp_path / "out.csv", model=served, chunk_rows=10)
    LocalEngine().score(source, tmp_path / "out.parquet", model=served, chunk_rows=10)

    assert pd.read_parquet(tmp_path / "out.parquet")["tags"].map(list).tolist() == [["a", "b"]] * 20


def test_get_engine() -> None:
    assert isinstance(get_engine("local"), LocalEngine)
    assert get_engine("spark", master="local[2]").name == "spark"  # no session until it scores
    with pytest.raises(ModelloopError, match=r"--engine 'dask': no such engine; choose one of: local, spark"):
        get_engine("dask")


def test_summary_to_dict() -> None:
    summary = ScoreSummary(Path("a.csv"), Path("b.parquet"), 3, 1000, 1, 0.5, "local")
    assert summary.to_dict() == {
        "input": "a.csv",
        "output": "b.parquet",
        "version": 3,
        "rows": 1000,
        "chunks": 1,
        "seconds": 0.5,
        "rows_per_second": 2000.0,
        "engine": "local",
    }
