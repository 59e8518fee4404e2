"""The few spellings in which DuckDB's SQL and Spark SQL differ, for the statistics' SQL.

The statistics are written once (`modelloop.stats.sql`, `modelloop.stats.metrics`,
`modelloop.monitoring.window`) and asked for in a dialect: the same query text with these
pieces swapped, so both engines compute one definition of each count and metric. Everything
else in that SQL is common to both (CASE, FILTER clauses, GROUPING SETS, window frames, `::`).

Spark runs it in ANSI mode with double-quoted identifiers (`modelloop.store.spark_views`), so
identifiers quote alike; ANSI refuses a division by zero, which the statistics guard with
`nullif` (DuckDB gives NULL there anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

#: The dialects, by the name `modelloop.store.logs.LogViews.dialect` carries.
DialectName = Literal["duckdb", "spark"]


@dataclass(frozen=True)
class Dialect:
    """How one engine spells what the statistics need."""

    name: DialectName

    @property
    def spark(self) -> bool:
        return self.name == "spark"

    @property
    def text_type(self) -> str:
        """The type of text: Spark's VARCHAR needs a length."""
        return "STRING" if self.spark else "VARCHAR"

    def finite(self, number: str) -> str:
        """True for a finite double, NULL for NULL (Spark has no `isfinite`)."""
        if self.spark:
            return f"(NOT isnan({number}) AND abs({number}) < CAST('Infinity' AS DOUBLE))"
        return f"isfinite({number})"

    def grouping(self, keys: Sequence[str]) -> str:
        """The bit mask of the keys a grouping set leaves out, the first key the highest bit."""
        return f"{'grouping_id' if self.spark else 'GROUPING'}({', '.join(keys)})"

    def contains(self, values: str, item: str) -> str:
        """Whether `item` is in `values`, a list from `string_list`."""
        return f"{'array_contains' if self.spark else 'list_contains'}({values}, {item})"

    def string_list(self, literals: Sequence[str]) -> str:
        """A list of text from SQL string literals (possibly none)."""
        if self.spark:
            return f"CAST(array({', '.join(literals)}) AS ARRAY<STRING>)"
        return "[" + ", ".join(literals) + "]::VARCHAR[]"

    def create_table(self, table: str, query: str) -> str:
        """A temporary table holding `query`'s rows, read by several later queries."""
        if self.spark:  # a cached view, dropped with its session when the query ends
            return f"CACHE TABLE {table} AS {query}"
        return f"CREATE OR REPLACE TEMP TABLE {table} AS {query}"

    def latest(self, value: str, received: str, seq: str) -> str:
        """The `value` of the row with the greatest (received, seq)."""
        if self.spark:
            return f"max_by({value}, named_struct('r', {received}, 's', {seq}))"
        # One number compares faster than a struct; seq, a row's place in one file, is < 2**32.
        return f"arg_max({value}, epoch_us({received})::HUGEINT * 4294967296 + {seq})"

    def sums(self, sql: str) -> str:
        """`sql` with DuckDB's `fsum` (a Kahan sum) as Spark's `sum`: the statistics' SQL is
        written with `fsum`, and Spark's sum of doubles is close enough for 1e-9."""
        return sql.replace("fsum(", "sum(") if self.spark else sql


DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark")


def dialect(name: DialectName) -> Dialect:
    """The dialect called `name`."""
    if name == "spark":
        return SPARK
    if name == "duckdb":
        return DUCKDB
    raise ValueError(f"unknown SQL dialect {name!r}: expected 'duckdb' or 'spark'")
