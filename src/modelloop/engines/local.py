"""The local engine: a CSV or Parquet file of any size scored on one machine, in chunks.

pyarrow reads the input in chunks of `chunk_rows` rows (Parquet by record batches, CSV by blocks,
cut to exactly `chunk_rows`), so memory follows the chunk size, never the file's. Each chunk is
checked against the model's data contract with vectorised Arrow and numpy calls, scored by the
model's own `predict` (its normalisation runs inside the artifact), and appended to a temporary
file beside the output, renamed over it only once every row is scored.

A CSV's columns are read as the text in the file and written back as that text, so a value is
never re-typed from the first block's guess, and a later block can never fail on it. Numeric
features are parsed as numbers for the model; nothing else is converted.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelloop.data.contract import Contract
from modelloop.engines.base import (
    ADDED_COLUMNS,
    PREDICTION_COLUMN,
    VERSION_COLUMN,
    Progress,
    ScoreSummary,
    ScoringModel,
)
from modelloop.errors import DataError, ModelloopError, UsageError

Format = Literal["csv", "parquet"]

#: Text that counts as missing in a CSV: pandas' `read_csv` defaults, so a file means the same
#: to `modelloop score` as to the pandas a user would read it with.
CSV_NULLS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip
#: CSV read block (pyarrow's default): the reader parses a few ahead, so memory follows it.
CSV_BLOCK_BYTES = 1 << 20
#: Parquet read buffer per column; see `_open_parquet`.
PARQUET_BUFFER_BYTES = 1 << 20
_SHOWN = 5
#: Arrow types a numeric feature may arrive as; the model's own normalisation makes them float64.
_NUMBER_TYPES = (pa.types.is_floating, pa.types.is_integer, pa.types.is_boolean, pa.types.is_decimal)


def file_format(path: Path, role: str) -> Format:
    """The format a file's name says; `role` ("input"/"output") names it in the error."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise UsageError(
        f"{path}: cannot tell the {role}'s format from its name; name it .csv, .csv.gz, .parquet or .pq"
    )


@dataclass(frozen=True)
class _Feature:
    name: str
    numeric: bool
    nullable: bool


@dataclass(frozen=True)
class _Input:
    schema: pa.Schema
    total: int | None
    batches: Iterator[pa.RecordBatch]
    close: Callable[[], None]


class LocalEngine:
    """Scores on this machine with pyarrow: streaming readers and writers, bounded memory."""

    name = "local"

    def __init__(self, *, csv_block_bytes: int = CSV_BLOCK_BYTES) -> None:
        self.csv_block_bytes = csv_block_bytes

    def score(
        self,
        input: Path,
        output: Path,
        *,
        model: ScoringModel,
        chunk_rows: int,
        progress: Progress | None = None,
    ) -> ScoreSummary:
        """Score every row of `input` into `output` (every input column, then `_prediction`
        and `_model_version`); on any failure, Ctrl-C included, nothing is left at `output`.

        Raises:
            DataError: the input is unreadable, lacks a feature, already has an added column,
                or a row breaks the contract (the message names the file, column and rows).
        """
        started = time.perf_counter()
        if chunk_rows < 1:
            raise ModelloopError(f"chunk_rows must be at least 1, got {chunk_rows}")
        in_format = file_format(input, "input")
        out_format = file_format(output, "output")
        if not input.is_file():
            raise DataError(f"{input}: no such file")
        if output.exists() and output.resolve() == input.resolve():
            raise DataError(f"{output}: the output would replace the input; write it elsewhere")
        features = _features(model.contract)
        source = (
            _open_parquet(input, chunk_rows)
            if in_format == "parquet"
            else _open_csv(input, self.csv_block_bytes)
        )
        try:
            _check_schema(source.schema, features, input)
            nested = [f.name for f in source.schema if pa.types.is_nested(f.type)]
            if nested and out_format == "csv":
                raise DataError(
                    f"{input}: the column(s) {', '.join(map(repr, nested))} hold lists or "
                    f"structures, which a CSV cannot; write Parquet (.parquet) instead of {output}"
                )
            schema = source.schema.append(pa.field(PREDICTION_COLUMN, pa.float64())).append(
                pa.field(VERSION_COLUMN, pa.int64())
            )
            output.parent.mkdir(parents=True, exist_ok=True)
            with _AtomicWriter(output, out_format, schema) as writer:
                rows = chunks = 0
                if progress is not None:
                    progress(0, source.total)  # the input is open and fits: scoring starts
                for chunk in _rechunk(source.batches, source.schema, chunk_rows):
                    problems, scores = _predict(model, chunk, features, first_row=rows + 1)
                    if problems:
                        raise DataError(
                            f"{input}: {'; '.join(problems)}. Found in rows {rows + 1}-"
                            f"{rows + chunk.num_rows} (row 1 is the first data row); scoring "
                            f"stopped and nothing was written to {output}"
                        )
                    scored = chunk.append_column(PREDICTION_COLUMN, pa.array(scores, pa.float64()))
                    versions = np.full(chunk.num_rows, model.version, dtype=np.int64)
                    writer.write(scored.append_column(VERSION_COLUMN, pa.array(versions)))
                    rows += chunk.num_rows
                    chunks += 1
                    if progress is not None:
                        progress(rows, source.total)
        finally:
            source.close()
        return ScoreSummary(
            input=input,
            output=output,
            version=model.version,
            rows=rows,
            chunks=chunks,
            seconds=time.perf_counter() - started,
            engine=self.name,
        )


# -- reading ----------------------------------------------------------------------------------


def _open_parquet(path: Path, chunk_rows: int) -> _Input:
    try:
        # Unbuffered: pyarrow otherwise loads a whole row group (a writer may make one of the
        # whole file) before the first batch; this way memory follows the batch.
        file = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
        schema = file.schema_arrow
        total = file.metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read it as Parquet: {exc}") from None

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from file.iter_batches(batch_size=chunk_rows)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: cannot read it as Parquet: {exc}") from None

    return _Input(schema, total, batches(), file.close)


def _open_csv(path: Path, block_bytes: int) -> _Input:
    def reader(types: dict[str, Any] | None) -> Any:
        convert = pacsv.ConvertOptions(
            column_types=types or {},
            null_values=CSV_NULLS,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        return pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block_bytes),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=convert,
        )

    try:
        # The header comes first: every column is then read as text (see the module's note).
        with contextlib.closing(reader(None)) as probe:
            names = list(probe.schema.names)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise DataError(
                f"{path}: the header names {', '.join(map(repr, duplicated))} more than once; "
                "every column needs its own name"
            )
        stream = reader({name: pa.string() for name in names})
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read it as CSV: {_arrow_message(exc)}") from None

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from stream
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: cannot read it as CSV: {_arrow_message(exc)}") from None

    return _Input(stream.schema, None, batches(), stream.close)


def _arrow_message(exc: BaseException) -> str:
    text = str(exc)
    return "the file is empty (a CSV to score needs a header row)" if "Empty CSV" in text else text


def _rechunk(batches: Iterator[pa.RecordBatch], schema: pa.Schema, chunk_rows: int) -> Iterator[pa.Table]:
    """Chunks of exactly `chunk_rows` rows (the last one shorter), whatever size the reader's
    batches are; nothing is copied, and less than a chunk plus one batch is ever held."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending, schema)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending, schema)


# -- checking and scoring -----------------------------------------------------------------------


def _features(contract: Contract) -> list[_Feature]:
    return [
        _Feature(rule.name, rule.role == "numeric", rule.nullable)
        for rule in contract.columns
        if rule.role in ("numeric", "categorical")
    ]


def _check_schema(schema: pa.Schema, features: list[_Feature], where: Path) -> None:
    names = set(schema.names)
    taken = [name for name in ADDED_COLUMNS if name in names]
    if taken:
        raise DataError(
            f"{where}: already has the column(s) {', '.join(map(repr, taken))}, which scoring adds; "
            "rename or drop them first (scoring never overwrites an input column)"
        )
    missing = [f.name for f in features if f.name not in names]
    if len(missing) == 1:
        raise DataError(f"{where}: column {missing[0]!r} is missing; the model needs it")
    if missing:
        raise DataError(
            f"{where}: {len(missing)} columns are missing: {', '.join(map(repr, missing))}; "
            "the model needs them"
        )


@dataclass(frozen=True)
class _Problem:
    """One way a chunk breaks the contract; `mask` marks its rows (None: the whole column)."""

    column: str
    why: str
    mask: np.ndarray | None
    examples: list[Any]

    def describe(self, first_row: int) -> str:
        if self.mask is None:
            return f"column {self.column!r} {self.why}"
        rows = np.flatnonzero(self.mask)
        shown = ", ".join(str(int(r) + first_row) for r in rows[:_SHOWN])
        more = ", ..." if len(rows) > _SHOWN else ""
        examples = f"; e.g. {', '.join(_short(v) for v in self.examples)}" if self.examples else ""
        return f"column {self.column!r} {self.why}: {len(rows)} row(s) (rows {shown}{more}{examples})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _predict(
    model: ScoringModel, chunk: pa.Table, features: list[_Feature], *, first_row: int
) -> tuple[list[str], np.ndarray]:
    """(problems, scores): the chunk's features checked and passed as read (numeric text
    parsed), then scored; nothing is scored when a row breaks the contract."""
    columns: dict[str, Any] = {}
    problems: list[_Problem] = []
    for feature in features:
        column = chunk.column(feature.name)
        if feature.numeric:
            columns[feature.name] = _numeric(feature, column, problems)
        else:
            columns[feature.name] = _categorical(feature, column, problems)
    if problems:
        return [p.describe(first_row) for p in problems], np.empty(0)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(chunk.num_rows))
    scores = np.asarray(model.predict(frame), dtype=np.float64).ravel()
    if scores.shape != (chunk.num_rows,):
        raise ModelloopError(
            f"model version {model.version} returned {scores.size} predictions for {chunk.num_rows} rows"
        )
    return [], scores


def _numeric(feature: _Feature, column: pa.ChunkedArray, problems: list[_Problem]) -> Any:
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    passed: Any
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        numbers = _parse_numbers(feature, column, problems)
        if numbers is None:
            return None
        passed = numbers
    elif pa.types.is_null(kind):
        numbers = np.full(len(column), np.nan)
        passed = numbers
    elif any(test(kind) for test in _NUMBER_TYPES):
        passed = column.to_pandas()
        as_float = column if pa.types.is_float64(kind) else pc.cast(column, pa.float64())
        numbers = as_float.to_numpy(zero_copy_only=False)
    else:
        problems.append(_Problem(feature.name, f"holds {kind} values, not numbers", None, []))
        return None
    missing = np.isnan(numbers)
    if not feature.nullable and missing.any():
        problems.append(
            _Problem(feature.name, "has nulls, which the data contract does not allow", missing, [])
        )
    infinite = np.isinf(numbers)
    if infinite.any():
        examples = numbers[infinite][:3].tolist()
        problems.append(
            _Problem(feature.name, "holds values that are not finite numbers", infinite, examples)
        )
    return passed


def _parse_numbers(feature: _Feature, column: pa.ChunkedArray, problems: list[_Problem]) -> np.ndarray | None:
    """Numeric text as float64: pyarrow's parser in one vectorised pass; the slow path (finding
    which rows are not numbers) runs only on a chunk that holds some."""
    try:
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid:
        pass
    trimmed = pc.utf8_trim_whitespace(column)
    try:
        return np.asarray(pc.cast(trimmed, pa.float64()).to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid:
        pass
    text = pd.Series(trimmed.to_numpy(zero_copy_only=False), dtype=object)
    parsed = pd.to_numeric(text, errors="coerce")
    bad = (parsed.isna() & text.notna()).to_numpy()
    if not bad.any():  # pandas reads every value as a number, as `read_csv` would: so do we
        return np.asarray(parsed.to_numpy(dtype=np.float64, na_value=np.nan))
    examples = list(dict.fromkeys(text[bad].head(20).tolist()))[:3]
    problems.append(_Problem(feature.name, "must hold numbers but holds text", bad, examples))
    return None


def _categorical(feature: _Feature, column: pa.ChunkedArray, problems: list[_Problem]) -> Any:
    kind = column.type
    if pa.types.is_nested(kind):
        problems.append(_Problem(feature.name, f"holds {kind} values, not single values", None, []))
        return None
    if not feature.nullable:
        missing = pc.is_null(column, nan_is_null=True)
        if pc.any(missing).as_py():
            problems.append(
                _Problem(
                    feature.name,
                    "has nulls, which the data contract does not allow",
                    missing.to_numpy(zero_copy_only=False),
                    [],
                )
            )
    return column.to_pandas()


# -- writing ----------------------------------------------------------------------------------


class _AtomicWriter:
    """Chunks appended to a temporary file beside `path`, fsynced and renamed over it at the end;
    on any failure (Ctrl-C included) the temporary file is removed and `path` left as it was."""

    def __init__(self, path: Path, fmt: Format, schema: pa.Schema) -> None:
        self.path = path
        self.format = fmt
        self.schema = schema
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._sink: Any = None
        self._parquet: Any = None
        self._header = True

    def __enter__(self) -> _AtomicWriter:
        try:
            if self.format == "parquet":
                self._parquet = pq.ParquetWriter(self.tmp, self.schema)
            elif self.path.name.lower().endswith(".gz"):
                self._sink = pa.CompressedOutputStream(str(self.tmp), "gzip")
            else:
                self._sink = pa.OSFile(str(self.tmp), "wb")
        except BaseException:
            self._discard()
            raise
        return self

    def write(self, table: pa.Table) -> None:
        try:
            if self._parquet is not None:
                self._parquet.write_table(table)
                return
            # Quotes only in a chunk whose text needs them, so a CSV reads back as it was written.
            quoting = "needed" if _needs_quotes(table) else "none"
            options = pacsv.WriteOptions(include_header=self._header, quoting_style=quoting)
            pacsv.write_csv(table, self._sink, options)
            self._header = False
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{self.path}: cannot write it: {exc}") from None

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if kind is not None:
            self._discard()
            return
        try:
            if self._header and self._sink is not None:
                self.write(self.schema.empty_table())  # an empty input still gets its header
            self._close()
            with open(self.tmp, "rb+") as done:
                os.fsync(done.fileno())
            os.replace(self.tmp, self.path)
        except BaseException:
            self._discard()
            raise

    def _close(self) -> None:
        parquet, sink = self._parquet, self._sink
        self._parquet = self._sink = None
        try:
            if parquet is not None:
                parquet.close()
        finally:
            if sink is not None:
                sink.close()

    def _discard(self) -> None:
        with contextlib.suppress(Exception):
            self._close()
        self.tmp.unlink(missing_ok=True)


_STRUCTURAL = (b",", b'"', b"\n", b"\r")


def _needs_quotes(table: pa.Table) -> bool:
    """Whether any text in `table` holds a delimiter, quote or line break. It searches the bytes
    of the text columns' values at once (a memchr per character): far cheaper than a regex per
    value."""
    for column in table.columns:
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            for chunk in column.chunks:
                values = chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk
                if any(c in _text_bytes(values) for c in _STRUCTURAL):
                    return True
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_string_view(kind):
            return True
    return False


def _text_bytes(values: pa.Array) -> bytes:
    """The bytes of a string array's values, for this slice only (its buffers may hold more)."""
    _, offsets, data = values.buffers()
    if data is None or not len(values):
        return b""
    width = np.int64 if pa.types.is_large_string(values.type) else np.int32
    bounds = np.frombuffer(offsets, dtype=width)
    start, end = int(bounds[values.offset]), int(bounds[values.offset + len(values)])
    return bytes(data.slice(start, end - start).to_pybytes())
