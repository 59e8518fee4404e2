"""The logs as Spark SQL views, for monitoring on Spark (`monitoring.engine: spark`).

The same rows DuckDB's views hold (`modelloop.store.logs.LogViews`): the window's Parquet files
and the rows still in the write-ahead log (handed over as Arrow), and every label file, with
`_seq` the row's place in its file, as DuckDB's `file_row_number`. Files whose columns differ
(a feature stored as numbers in one, as text in another) are unioned by name, each column cast
to one type as DuckDB's `union_by_name` does. Only what a query aggregates comes back.

Each query runs in its own Spark session (`newSession`: the one SparkContext, its own temporary
views and settings), in ANSI mode with double-quoted identifiers, so the statistics' SQL, written
once, runs in Spark's dialect (`modelloop.stats.dialect`). Its temporary views, and the tables it
cached, are dropped when the query ends. Spark reads local paths here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelloop.store.logs import (
    LABEL_SEQ,
    MODEL_VERSION,
    PREDICTION,
    RECEIVED_AT,
    REQUEST_ID,
    SERVED_AT,
    LogViews,
)

logger = logging.getLogger(__name__)

#: Spark's type names (`simpleString`) as DuckDB names them, the names the statistics read.
_DUCKDB_NAMES = {
    "tinyint": "TINYINT",
    "smallint": "SMALLINT",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "timestamp_ntz": "TIMESTAMP",
    "date": "DATE",
}
_INTEGRAL = {"tinyint", "smallint", "int", "bigint"}
_NUMERIC = _INTEGRAL | {"float", "double"}
_SETTINGS = {
    "spark.sql.ansi.enabled": "true",
    # "x" is an identifier, as in DuckDB: the statistics quote columns once, for both.
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",
    "spark.sql.session.timeZone": "UTC",
}


@dataclass(frozen=True)
class SparkSources:
    """Where the views' rows are.

    Attributes:
        prediction_files: Parquet files that may hold rows of the window.
        recent: More prediction rows (a pyarrow Table): the write-ahead log's, or a memory
            store's; None for none.
        label_files: Parquet files of labels; each row's `_seq` is its place in its file.
        label_rows: More labels (a pyarrow Table with `_seq`), or None.
        where: The window, `start < timestamp <= end`, in SQL ("true" for every row).
    """

    prediction_files: Sequence[Path]
    recent: Any
    label_files: Sequence[Path]
    label_rows: Any
    where: str


class SparkConnection:
    """DuckDB's `execute(sql).fetchall()` over one Spark session, for the statistics' SQL."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def execute(self, sql: str) -> _Result:
        return _Result(self.session.sql(sql))

    def columns(self, view: str) -> dict[str, str]:
        """The view's columns and their types, named as DuckDB names them."""
        fields = self.session.table(view).schema.fields
        return {f.name: _duckdb_name(f.dataType.simpleString()) for f in fields}

    def close(self) -> None:
        """Drop the session's temporary views; dropping a cached one frees its cache."""
        catalog = self.session.catalog
        for table in catalog.listTables():
            if table.isTemporary:
                catalog.dropTempView(table.name)


class _Result:
    def __init__(self, frame: Any) -> None:
        self._frame = frame

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._frame.collect()]

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._frame.take(1)
        return tuple(rows[0]) if rows else None


@contextmanager
def spark_views(
    spark: Any,
    sources: SparkSources,
    *,
    id_column: str,
    timestamp_column: str,
    target_column: str,
) -> Iterator[LogViews]:
    """The `predictions` and `labels` views on a new session of `spark`, for one query."""
    session = spark.newSession()
    for key, value in _SETTINGS.items():
        session.conf.set(key, value)
    # The statistics' aggregates are small: Spark's default of 200 shuffle partitions would cost
    # more in tasks than the work itself (a setting of the user's, $MODELLOOP_SPARK_CONF, wins).
    if spark.conf.get("spark.sql.shuffle.partitions") == "200":
        session.conf.set("spark.sql.shuffle.partitions", str(spark.sparkContext.defaultParallelism))
    connection = SparkConnection(session)
    try:
        logged = _union(session, _read(session, sources.prediction_files), sources.recent)
        if logged is None:
            logged = session.createDataFrame([], _ddl({
                id_column: "STRING", timestamp_column: "TIMESTAMP_NTZ", PREDICTION: "DOUBLE",
                MODEL_VERSION: "BIGINT", REQUEST_ID: "STRING", SERVED_AT: "TIMESTAMP_NTZ",
            }))
        logged.createOrReplaceTempView("_logged")
        session.sql(f"SELECT * FROM _logged WHERE {sources.where}").createOrReplaceTempView("predictions")
        wanted = [id_column, target_column, RECEIVED_AT, LABEL_SEQ]
        labels = _union(session, _read(session, sources.label_files, numbered=True), sources.label_rows)
        if labels is None:
            labels = session.createDataFrame([], _ddl({
                id_column: "STRING", target_column: "DOUBLE", RECEIVED_AT: "TIMESTAMP_NTZ",
                LABEL_SEQ: "BIGINT",
            }))
        labels.select(*[labels[_ticked(name)] for name in wanted]).createOrReplaceTempView("labels")
        yield LogViews(connection, dialect="spark")
    finally:
        connection.close()


def _read(session: Any, files: Sequence[Path], *, numbered: bool = False) -> list[Any]:
    """The files as DataFrames, one per distinct schema; a damaged file is skipped, as DuckDB's
    reads do."""
    import pyarrow.parquet as pq

    groups: dict[Any, list[str]] = {}
    for path in files:
        try:
            schema = pq.read_schema(path).remove_metadata()
        except (OSError, ValueError):
            logger.warning(
                "skipping %s: not a readable Parquet file (truncated by a crash or copied in "
                "half-written); move it out of the log directory",
                path,
            )
            continue
        groups.setdefault(schema, []).append(str(path))
    frames = []
    for paths in groups.values():
        frame = session.read.parquet(*paths)
        if numbered:  # the row's place in its file, as DuckDB's file_row_number
            frame = frame.select("*", _column("_metadata.row_index").alias(LABEL_SEQ))
        frames.append(frame)
    return frames


def _union(session: Any, frames: list[Any], rows: Any) -> Any:
    """The frames (and the Arrow rows) as one, by column name, each column of one type."""
    if rows is not None and rows.num_rows:
        frames = [*frames, session.createDataFrame(rows)]
    if not frames:
        return None
    types: dict[str, list[str]] = {}
    for frame in frames:
        for f in frame.schema.fields:
            types.setdefault(f.name, []).append(f.dataType.simpleString())
    common = {name: _common(found) for name, found in types.items()}
    merged = None
    for frame in frames:
        present = set(frame.columns)
        cast = frame.select(*[
            (frame[_ticked(name)] if name in present else _null()).cast(kind).alias(name)
            for name, kind in common.items()
        ])
        merged = cast if merged is None else merged.unionByName(cast)
    return merged


def _common(kinds: list[str]) -> str:
    """One type for a column stored as `kinds`, as DuckDB's union_by_name picks it."""
    distinct = set(kinds)
    if len(distinct) == 1:
        return kinds[0]
    if distinct <= _INTEGRAL:
        return "bigint"
    if distinct <= _NUMERIC:
        return "double"
    if distinct <= {"timestamp", "timestamp_ntz"}:
        return "timestamp_ntz"
    return "string"


def _null() -> Any:
    from pyspark.sql import functions

    return functions.lit(None)


def _column(name: str) -> Any:
    from pyspark.sql import functions

    return functions.col(name)


def _duckdb_name(spark_type: str) -> str:
    return _DUCKDB_NAMES.get(spark_type, spark_type.upper())


def _ticked(name: str) -> str:
    """A column name as Spark reads it whatever it holds (a dot, a space)."""
    return "`" + name.replace("`", "``") + "`"


def _ddl(columns: dict[str, str]) -> str:
    return ", ".join(f"{_ticked(name)} {kind}" for name, kind in columns.items())
