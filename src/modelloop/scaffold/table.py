"""Read the user's table the way `data.source` will read it, but only as much as a proposal needs.

The CSV is read with pandas' defaults, exactly as `FileSource` reads it at training time, so a
column the proposal calls numeric is numeric when the model trains. A very large table is read
up to `MAX_ROWS` rows: enough to type the columns and measure the time column's cadence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from modelloop.errors import DataError

#: At most this many rows are read; the proposal says so when the table holds more.
MAX_ROWS = 1_000_000

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Table:
    """The rows read, and whether the file holds more than were read."""

    path: Path
    frame: pd.DataFrame
    truncated: bool
    total_rows: int | None  # known for Parquet (its footer says); None for a truncated CSV
    limit: int  # the most rows that were to be read


def read_table(path: Path, max_rows: int | None = None) -> Table:
    """The first `max_rows` (default `MAX_ROWS`) rows of a CSV or Parquet file; every failure
    names the file."""
    max_rows = MAX_ROWS if max_rows is None else max_rows
    if not path.exists():
        raise DataError(f"{path}: no such file (--from names the CSV or Parquet table to start from)")
    if path.is_dir():
        raise DataError(f"{path} is a folder; --from takes one CSV or Parquet file")
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        table = _read_csv(path, max_rows)
    elif name.endswith(PARQUET_SUFFIXES):
        table = _read_parquet(path, max_rows)
    else:
        raise DataError(
            f"{path}: expected a CSV or Parquet file (a name ending in .csv, .csv.gz, .parquet or .pq)"
        )
    if table.frame.empty:
        raise DataError(f"{path} holds no rows; a proposal needs data to look at")
    if len(table.frame.columns) < 3:
        raise DataError(
            f"{path} has {len(table.frame.columns)} column(s); a project needs a time column, a "
            "target and at least one feature"
        )
    return table


def _read_csv(path: Path, max_rows: int) -> Table:
    try:
        # One row past the limit tells whether the file holds more.
        frame = pd.read_csv(path, nrows=max_rows + 1)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read it as CSV: {exc}") from None
    truncated = len(frame) > max_rows
    if truncated:
        frame = frame.iloc[:max_rows]
    return Table(path, frame, truncated, None if truncated else len(frame), max_rows)


def _read_parquet(path: Path, max_rows: int) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        total = file.metadata.num_rows
        batches = []
        read = 0
        for batch in file.iter_batches(batch_size=65_536):
            batches.append(batch)
            read += batch.num_rows
            if read >= max_rows:
                break
        table = pa.Table.from_batches(batches, schema=file.schema_arrow)
        frame = table.slice(0, max_rows).to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read it as Parquet: {exc}") from None
    return Table(path, frame, total > max_rows, total, max_rows)
