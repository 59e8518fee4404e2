"""The Spark engine: a CSV or Parquet file scored by Spark's executors, through MLflow's
`spark_udf` over the same model version and the same `predict` as the local engine.

The model's version ships to the executors as its MLflow artifact (`mlflow.pyfunc.spark_udf`,
obtained from the model, so this module never imports MLflow): each Python worker runs this
interpreter and the pyfunc's own `predict`, normalisation included, on Arrow batches of at most
`chunk_rows` rows. The features are passed as the local engine passes them (numeric text parsed
to numbers, everything else as read), so both engines give the same numbers for the same rows.

The data contract is checked first, in one Spark aggregation (no Python): a missing feature,
text or an infinity in a numeric feature, or a forbidden null stops the job with one message
naming the file, the column and the rows (row 1 is the first data row), before anything is
scored. A CSV's columns are read as the text in the file, with the local engine's null spellings.

Output: one file at OUTPUT, like the local engine's, so what reads it does not change with the
engine. Spark writes its part files in parallel into a hidden folder beside OUTPUT; they are then
streamed, in order, through the local engine's atomic writer (cast back to the input's own
column types), and the folder is removed. On any failure nothing is left at OUTPUT.

Spark reads local paths here; a cluster reading `s3a://` adds the `hadoop-aws` jars through
$MODELLOOP_SPARK_CONF (see `modelloop.spark` and the README).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from modelloop.engines.base import (
    PREDICTION_COLUMN,
    VERSION_COLUMN,
    Progress,
    ScoreSummary,
    ScoringModel,
)
from modelloop.engines.local import (
    CSV_BLOCK_BYTES,
    CSV_NULLS,
    Format,
    _AtomicWriter,
    _check_schema,
    _features,
    _open_csv,
    _short,
    file_format,
)
from modelloop.errors import DataError, ModelloopError
from modelloop.spark import master_of, session

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

_SHOWN = 5
#: Row ids from `monotonically_increasing_id`: the partition in the bits above these.
_ID_BITS = 33
_ROW_ID = "__modelloop_row_id"
_BATCH_SIZE = "spark.sql.execution.arrow.maxRecordsPerBatch"
_NUMBER_TYPES = ("byte", "short", "int", "bigint", "float", "double", "boolean")


class SparkEngine:
    """Scores on Spark (`master`: `local[*]`, `local[2]`, `spark://host:7077`, `yarn`, ...).

    The model must come from a registry that can ship it to executors (MLflow's): it needs a
    `spark_udf(spark)` as well as the `ScoringModel` protocol.
    """

    name = "spark"

    def __init__(self, master: str | None = None) -> None:
        self.master = master_of(master)

    def score(
        self,
        input: Path,
        output: Path,
        *,
        model: ScoringModel,
        chunk_rows: int,
        progress: Progress | None = None,
    ) -> ScoreSummary:
        """Score every row of `input` into the single file `output` (every input column, then
        `_prediction` and `_model_version`); on any failure nothing is left at `output`.

        `chunk_rows` bounds the rows a Python worker holds: the Arrow batches Spark hands the
        model. The summary's `chunks` counts Spark's partitions (its tasks).

        Raises:
            DataError: the input is unreadable, lacks a feature, already has an added column,
                or a row breaks the contract (the message names the file, column and rows).
            ModelloopError: Spark cannot start (a bad master) or failed.
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
        make_udf: Callable[[Any], Callable[[Mapping[str, Column]], Column]] | None = getattr(
            model, "spark_udf", None
        )
        if make_udf is None:
            raise ModelloopError(
                f"model version {model.version} cannot run on Spark (no spark_udf); use --engine local"
            )
        features = _features(model.contract)
        schema = _input_schema(input, in_format)
        _check_schema(schema, features, input)
        nested = [f.name for f in schema if pa.types.is_nested(f.type)]
        if nested and out_format == "csv":
            raise DataError(
                f"{input}: the column(s) {', '.join(map(repr, nested))} hold lists or "
                f"structures, which a CSV cannot; write Parquet (.parquet) instead of {output}"
            )
        target = schema.append(pa.field(PREDICTION_COLUMN, pa.float64())).append(
            pa.field(VERSION_COLUMN, pa.int64())
        )

        spark = session(self.master)
        from pyspark.sql import functions as F

        output.parent.mkdir(parents=True, exist_ok=True)
        parts = output.with_name(f".{output.name}.{os.getpid()}.spark")
        with _spark_errors(input, self.master), _batch_size(spark, chunk_rows):
            try:
                frame = _read(spark, input, in_format, schema.names)
                passed, total = _check(frame, features, input, output)
                if progress is not None:
                    progress(0, total)  # the input fits the contract: scoring starts
                udf = make_udf(spark)
                scored = _spread(spark, frame, total, chunk_rows).select(
                    *(_col(name) for name in schema.names),
                    udf(passed).alias(PREDICTION_COLUMN),
                    F.lit(model.version).cast("long").alias(VERSION_COLUMN),
                )
                scored.write.parquet(str(parts))
                with _AtomicWriter(output, out_format, target) as writer:
                    rows = chunks = 0
                    for path in sorted(parts.glob("part-*.parquet")):
                        counted = False
                        for batch in _part_batches(path, chunk_rows, target):
                            writer.write(batch)
                            rows += batch.num_rows
                            counted = counted or batch.num_rows > 0
                            if progress is not None:
                                progress(rows, total)
                        chunks += counted
                    if rows != total:  # inside the writer: a short output is never renamed into place
                        raise ModelloopError(f"{input}: Spark scored {rows} rows of {total}")
            finally:
                shutil.rmtree(parts, ignore_errors=True)
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


def _input_schema(path: Path, fmt: Format) -> pa.Schema:
    """The input's columns as the local engine reads them (a CSV's all text)."""
    if fmt == "parquet":
        try:
            return pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: cannot read it as Parquet: {exc}") from None
    probe = _open_csv(path, CSV_BLOCK_BYTES)  # the header, its duplicates, an empty file
    probe.close()
    return probe.schema


def _col(name: str) -> Column:
    """A column by its exact name (a dot or a space in it is not Spark syntax)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _read(spark: SparkSession, path: Path, fmt: Format, names: list[str]) -> DataFrame:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    if fmt == "parquet":
        return spark.read.parquet(str(path))
    # Every column as text (the header's names, as given), RFC 4180 quoting (a doubled quote).
    # Multi-line, as the local engine reads it: a quoted value may hold a line break. Spark then
    # reads the file in one task (a line is not a row), and `_spread` shares the scoring out.
    text = StructType([StructField(name, StringType()) for name in names])
    frame = spark.read.csv(
        str(path), schema=text, header=True, quote='"', escape='"', mode="FAILFAST", multiLine=True
    )
    nulls = F.array(*(F.lit(token) for token in CSV_NULLS))
    return frame.select(
        *(
            F.when(F.array_contains(nulls, _col(name)), None).otherwise(_col(name)).alias(name)
            for name in names
        )
    )


def _spread(spark: SparkSession, frame: DataFrame, rows: int, chunk_rows: int) -> DataFrame:
    """The rows over at least one partition per core, in the file's order, when the file gives
    fewer and there is more than a batch to score: a CSV, or a Parquet file of one row group, is
    otherwise one task, scored by one Python worker while the others wait."""
    from pyspark.sql import functions as F

    cores = spark.sparkContext.defaultParallelism
    if rows <= chunk_rows or frame.rdd.getNumPartitions() >= cores:
        return frame
    ordered = frame.withColumn(_ROW_ID, F.monotonically_increasing_id())
    return ordered.repartitionByRange(cores, _col(_ROW_ID)).sortWithinPartitions(_ROW_ID).drop(_ROW_ID)


def _part_batches(path: Path, chunk_rows: int, target: pa.Schema) -> Iterator[pa.Table]:
    """One part file's rows, cast back to the input's own column types (Spark widens some)."""
    file = pq.ParquetFile(path)
    try:
        for batch in file.iter_batches(batch_size=chunk_rows):
            table = pa.Table.from_batches([batch])
            try:
                yield table.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"cannot write Spark's {table.schema} as the input's types: {exc}") from None
    finally:
        file.close()


# -- checking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """One way a row can break the contract: `broken` is true on those rows; `shown` is the
    value to quote (None: quote nothing)."""

    column: str
    why: str
    broken: Column
    shown: Column | None


def _check(
    frame: DataFrame, features: list[Any], source: Path, output: Path
) -> tuple[dict[str, Column], int]:
    """(the features as the model gets them, by name; the number of rows), or a DataError naming every
    broken rule, its column, the first rows breaking it and a few values."""
    from pyspark.sql import functions as F

    kinds = {field.name: field.dataType.simpleString() for field in frame.schema.fields}
    passed: dict[str, Column] = {}
    rules: list[_Rule] = []
    whole: list[str] = []  # columns of a type that cannot hold the feature at all
    for feature in features:
        raw, kind = _col(feature.name), kinds[feature.name]
        if feature.numeric:
            if kind == "string":
                number = F.expr(f"try_cast(trim(`{feature.name.replace('`', '``')}`) AS DOUBLE)")
                rules.append(
                    _Rule(feature.name, "must hold numbers but holds text",
                          raw.isNotNull() & number.isNull(), raw)
                )
                passed[feature.name] = number
            elif kind in _NUMBER_TYPES or kind.startswith("decimal"):
                number = raw.cast("double")
                passed[feature.name] = raw
            elif kind == "void":
                number = F.lit(None).cast("double")
                passed[feature.name] = number
            else:
                whole.append(f"column {feature.name!r} holds {kind} values, not numbers")
                continue
            if not feature.nullable:
                # Text that is not a number is told once, as text, not as a null too.
                missing = raw.isNull() if kind == "string" else number.isNull()
                rules.append(
                    _Rule(feature.name, "has nulls, which the data contract does not allow",
                          missing | F.isnan(number), None)
                )
            rules.append(
                _Rule(feature.name, "holds values that are not finite numbers",
                      number.isin(float("inf"), float("-inf")), number)
            )
        else:
            if kind.startswith(("array", "map", "struct")):
                whole.append(f"column {feature.name!r} holds {kind} values, not single values")
                continue
            if not feature.nullable:
                missing = raw.isNull()
                if kind in ("float", "double"):
                    missing = missing | F.isnan(raw)
                rules.append(
                    _Rule(feature.name, "has nulls, which the data contract does not allow", missing, None)
                )
            passed[feature.name] = raw
    if whole:
        raise DataError(f"{source}: {'; '.join(whole)}; scoring stopped and nothing was written to {output}")
    counts = frame.agg(
        F.count(F.lit(1)).alias("rows"),
        *(F.sum(rule.broken.cast("long")).alias(f"rule{i}") for i, rule in enumerate(rules)),
    ).first()
    total = int(counts["rows"]) if counts is not None else 0
    broken = [(rule, int(counts[f"rule{i}"] or 0)) for i, rule in enumerate(rules)] if counts else []
    broken = [(rule, n) for rule, n in broken if n]
    if broken:
        problems = _describe(frame, broken)
        raise DataError(
            f"{source}: {'; '.join(problems)} (row 1 is the first data row); scoring stopped "
            f"and nothing was written to {output}"
        )
    return passed, total


def _describe(frame: DataFrame, broken: list[tuple[_Rule, int]]) -> list[str]:
    """Each broken rule with its first rows (numbered from 1, in the file's order) and values.

    Runs only when something is broken: row numbers come from Spark's partition-ordered ids and
    each partition's row count, so no row is ever sent to the driver but the few shown."""
    from pyspark.sql import functions as F

    ided = frame.withColumn(_ROW_ID, F.monotonically_increasing_id())
    partition = F.shiftright(_col(_ROW_ID), _ID_BITS)
    counted = ided.groupBy(partition.alias("p")).agg(F.count(F.lit(1)).alias("n")).collect()
    sizes = {int(r["p"]): int(r["n"]) for r in counted}
    offsets: dict[int, int] = {}
    seen = 0
    for part in sorted(sizes):
        offsets[part], seen = seen, seen + sizes[part]

    def row_number(row_id: int) -> int:
        return offsets[row_id >> _ID_BITS] + (row_id & ((1 << _ID_BITS) - 1)) + 1

    described = []
    for rule, n in broken:
        shown = rule.shown if rule.shown is not None else F.lit(None)
        first = (
            ided.where(rule.broken)
            .select(_col(_ROW_ID).alias("id"), shown.alias("value"))
            .orderBy("id")
            .limit(_SHOWN)
            .collect()
        )
        rows = ", ".join(str(row_number(int(r["id"]))) for r in first)
        more = ", ..." if n > _SHOWN else ""
        values = list(dict.fromkeys(r["value"] for r in first if r["value"] is not None))[:3]
        examples = f"; e.g. {', '.join(_short(v) for v in values)}" if values else ""
        described.append(f"column {rule.column!r} {rule.why}: {n} row(s) (rows {rows}{more}{examples})")
    return described


# -- Spark's state and errors -----------------------------------------------------------------


@contextlib.contextmanager
def _batch_size(spark: SparkSession, chunk_rows: int) -> Iterator[None]:
    """Arrow batches of at most `chunk_rows` rows to the Python workers, for this job only."""
    before = spark.conf.get(_BATCH_SIZE, None)
    spark.conf.set(_BATCH_SIZE, str(chunk_rows))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(_BATCH_SIZE)
        else:
            spark.conf.set(_BATCH_SIZE, before)


@contextlib.contextmanager
def _spark_errors(source: Path, master: str) -> Iterator[None]:
    """A failure inside Spark (an unreadable file, a malformed CSV line, a worker that failed)
    as one message naming the file and the master, not a JVM stack trace."""
    from py4j.protocol import Py4JError  # type: ignore[import-untyped]
    from pyspark.errors import PySparkException

    try:
        yield
    except (PySparkException, Py4JError) as exc:
        text = str(exc).strip()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = next((line for line in lines if "Error" in line or "Exception" in line), "")
        reason = reason or (lines[0] if lines else type(exc).__name__)
        raise DataError(f"{source}: Spark (master {master}) failed: {reason[:500]}") from None
