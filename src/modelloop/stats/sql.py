"""Counting rows against a reference profile in SQL (DuckDB), where the prediction log lives.

Two steps. `DistinctValues` collapses the rows, in one scan, to how often each value of each
feature occurs (per model version when asked): a table as small as the features' distinct
values, whatever the number of rows, and mergeable (frequencies add up). `count_queries` then
bins those values against a profile, in SQL too, so only bin counts come back: a window of any
size is a few hundred integers (`modelloop.stats.counts.FeatureCounts`), equal to what
`count_frame` gives on the same rows in pandas. The binning rules mirror
`modelloop.stats.profile` exactly: point masses matched within np.isclose's tolerance (the
nearest mass at or above a value first), intervals closed on the right, non-finite numbers and
NaN missing, categories compared as text (`str()` of the value).

Only SQL text is built here, in DuckDB's dialect or Spark's (`modelloop.stats.dialect`); the
caller runs it (neither engine is imported).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelloop.stats.counts import MAX_UNSEEN_LISTED, FeatureCounts, known_categories, tracks_unseen
from modelloop.stats.dialect import DUCKDB, Dialect
from modelloop.stats.profile import check_bins

#: np.isclose's tolerances in `modelloop.stats.profile._numeric_counts`: the same here.
_RTOL = "1e-07"
_ATOL = "1e-12"
_NUMBERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "BOOLEAN")
_TEXT = ("VARCHAR", "STRING", "TEXT")


@dataclass(frozen=True)
class DistinctValues:
    """SQL that collapses rows to (feature, value, count): one scan, one small table.

    Attributes:
        features: The features to collapse, each a column of the rows.
        types: Their DuckDB types (`DESCRIBE`; Spark's named as DuckDB's), which say how a
            value reads as a number or text.
        table: The temporary table `create` fills.
        group: A column to keep apart (the model version), or None for all rows as one.
        dialect: The SQL dialect of the engine that runs these queries and `count_queries`'.
    """

    features: tuple[str, ...]
    types: Mapping[str, str]
    table: str = "_distinct"
    group: str | None = None
    dialect: Dialect = DUCKDB

    def create(self, source: str) -> str:
        """The statement that fills `table` from `source` (a table, a view or a subquery)."""
        keys = [f"x{i}" for i in range(len(self.features))]
        group = [f"{self.group} AS _g"] if self.group else []
        inner = ", ".join([*group, *(f"{quote(n)} AS {k}" for n, k in zip(self.features, keys, strict=True))])
        prefix = "_g, " if self.group else ""
        sets = ", ".join(f"({prefix}{key})" for key in keys)
        # The group is in every set, so its bit (the highest) is 0: Spark wants every key named.
        grouped = ["_g", *keys] if self.group else keys
        return self.dialect.create_table(
            self.table,
            f"SELECT {prefix}{', '.join(keys)}, {self.dialect.grouping(grouped)} AS _set, count(*) AS _n "
            f"FROM (SELECT {inner} FROM {source}) GROUP BY GROUPING SETS ({sets})",
        )

    def values(self, name: str, group: Any = None, *, every_group: bool = False) -> str | None:
        """A subquery of one feature's distinct values `x` and their counts `n` (None if the
        feature was not collapsed): rows of `group` only, unless `every_group`."""
        if name not in self.features:
            return None
        index = self.features.index(name)
        # GROUPING() sets a bit for each key left out of the set; this set keeps only x<index>.
        mask = ((1 << len(self.features)) - 1) ^ (1 << (len(self.features) - 1 - index))
        where = f"_set = {mask}"
        if self.group and not every_group:
            where += " AND _g IS NULL" if group is None else f" AND _g = {_group_literal(group)}"
        return f"(SELECT x{index} AS x, _n AS n FROM {self.table} WHERE {where})"


@dataclass(frozen=True)
class CountQueries:
    """The queries that count collapsed rows against one profile, and how to read them back.

    Run each (skip one that is None) and pass its rows to `read`, in the same order.
    """

    bins: str | None  # rows (feature index, bin, count)
    ranges: str | None  # rows (feature index, below, above, smallest, largest): numeric features
    unseen: str | None  # rows (feature index, value, count): the most frequent unseen categories
    features: tuple[tuple[str, str, int], ...]  # (name, kind, number of bins), by index

    def read(
        self,
        bins: Iterable[Sequence[Any]],
        ranges: Iterable[Sequence[Any]] = (),
        unseen: Iterable[Sequence[Any]] = (),
    ) -> dict[str, FeatureCounts]:
        """FeatureCounts per feature from the queries' rows."""
        counted = [[0] * (n_bins + 1) for _name, _kind, n_bins in self.features]
        for index, bin_index, count in bins:
            counted[int(index)][int(bin_index)] += int(count)
        extremes: dict[int, Sequence[Any]] = {int(row[0]): row[1:] for row in ranges}
        listed: dict[int, list[tuple[str, int]]] = {}
        for index, value, count in unseen:
            listed.setdefault(int(index), []).append((str(value), int(count)))
        found: dict[str, FeatureCounts] = {}
        for index, (name, kind, n_bins) in enumerate(self.features):
            counts = counted[index]
            if kind == "numeric":
                below, above, low, high = extremes.get(index, (0, 0, None, None))
                found[name] = FeatureCounts(
                    name,
                    kind,
                    tuple(counts[:n_bins]),
                    below=int(below or 0),
                    above=int(above or 0),
                    low=None if low is None else float(low),
                    high=None if high is None else float(high),
                )
            else:
                # Unseen categories carry a code past the bins; they belong to "other".
                unseen_count = counts[n_bins]
                counts[n_bins - 2] += unseen_count
                ordered = sorted(listed.get(index, []), key=lambda kv: (-kv[1], kv[0]))
                found[name] = FeatureCounts(
                    name,
                    kind,
                    tuple(counts[:n_bins]),
                    unseen=unseen_count,
                    unseen_values=tuple(ordered[:MAX_UNSEEN_LISTED]),
                )
        return found


def count_queries(
    profile: Mapping[str, Any], distinct: DistinctValues, group: Any = None, *, every_group: bool = False
) -> CountQueries:
    """Count the collapsed rows of `group` (or of every group) against `profile`.

    A profiled feature that was not collapsed (not a column of the rows) is left out, as
    `count_frame` leaves out an absent column.
    """
    bins: list[str] = []
    ranges: list[str] = []
    unseen: list[str] = []
    features: list[tuple[str, str, int]] = []
    dialect = distinct.dialect
    for name, feature in profile.get("features", {}).items():
        values = distinct.values(str(name), group, every_group=every_group)
        if values is None:
            continue
        index = len(features)
        kind = feature.get("kind")
        if kind == "numeric":
            number = as_number("x", distinct.types[name])
            finite = _finite(number, dialect)
            n_bins = _numeric_bins(feature)
            bins.append(
                f"SELECT {index} AS f, {numeric_bin(feature, 'v')} AS b, sum(n) AS n "
                f"FROM (SELECT {finite} AS v, n FROM {values}) GROUP BY b"
            )
            low, high = feature.get("min"), feature.get("max")
            below = f"sum(n) FILTER (WHERE v < {_double(low)})" if low is not None else "0"
            above = f"sum(n) FILTER (WHERE v > {_double(high)})" if high is not None else "0"
            ranges.append(
                f"SELECT {index} AS f, {below}, {above}, min(v), max(v) "
                f"FROM (SELECT {finite} AS v, n FROM {values})"
            )
        elif kind == "categorical":
            text = as_text("x", distinct.types[name], dialect)
            n_bins = _categorical_bins(feature)
            bins.append(
                f"SELECT {index} AS f, {category_bin(feature, 's', dialect)} AS b, sum(n) AS n "
                f"FROM (SELECT {text} AS s, n FROM {values}) GROUP BY b"
            )
            if tracks_unseen(feature):
                known = _string_list(known_categories(feature), dialect)
                unseen.append(
                    f"(SELECT {index} AS f, s, sum(n) AS n FROM (SELECT {text} AS s, n FROM {values}) "
                    f"WHERE s IS NOT NULL AND NOT {dialect.contains(known, 's')} "
                    f"GROUP BY s ORDER BY n DESC, s LIMIT {MAX_UNSEEN_LISTED})"
                )
        else:
            raise ValueError(f"unknown feature kind {kind!r}: expected 'numeric' or 'categorical'")
        features.append((str(name), str(kind), n_bins))
    return CountQueries(
        bins=" UNION ALL ".join(bins) or None,
        ranges=" UNION ALL ".join(ranges) or None,
        unseen=" UNION ALL ".join(unseen) or None,
        features=tuple(features),
    )


def numeric_bin(feature: Mapping[str, Any], v: str) -> str:
    """The bin of `v` (a finite number, or NULL for missing) in a numeric feature profile."""
    masses = [float(m) for m in feature["point_masses"]]
    edges = [float(e) for e in feature["edges"]]
    n_bins = _numeric_bins(feature)
    interval = _interval_bin(v, edges, len(masses))
    placed = f"COALESCE({_mass_bin(v, masses)}, {interval})" if masses else interval
    return f"CASE WHEN {v} IS NULL THEN {n_bins - 1} ELSE {placed} END"


def category_bin(feature: Mapping[str, Any], s: str, dialect: Dialect = DUCKDB) -> str:
    """The bin of `s` (text, or NULL for missing) in a categorical feature profile. When the
    profile stores every category, an unseen one gets the code one past the last bin."""
    top = [str(label) for label in list(feature["labels"])[:-2]]
    n_bins = _categorical_bins(feature)
    other = str(len(top))
    if tracks_unseen(feature):
        # A top category is known: only the rest need the membership test.
        rest = [c for c in known_categories(feature) if c not in set(top)]
        known = dialect.contains(_string_list(rest, dialect), s) if rest else "false"
        other = f"CASE WHEN {known} THEN {len(top)} ELSE {n_bins} END"
    whens = " ".join(f"WHEN {literal(label, dialect)} THEN {k}" for k, label in enumerate(top))
    placed = f"CASE {s} {whens} ELSE {other} END" if top else other
    return f"CASE WHEN {s} IS NULL THEN {n_bins - 1} ELSE {placed} END"


def as_number(column: str, duckdb_type: str) -> str:
    """A column as a double: text that does not read as a number is NULL (missing), as with
    pd.to_numeric(errors="coerce")."""
    if duckdb_type.upper().startswith(_NUMBERS):
        return f"CAST({column} AS DOUBLE)"
    return f"TRY_CAST({column} AS DOUBLE)"


def as_text(column: str, duckdb_type: str, dialect: Dialect = DUCKDB) -> str:
    """A column as the text its categories are compared in; NULL (and NaN) is missing.

    Doubles print as each engine prints them: alike for ordinary values (`1.5`, `3.0`), not in
    exponent form (DuckDB and Python write `1e-05`, Spark `1.0E-5`).
    """
    kind = duckdb_type.upper()
    if kind.startswith(_TEXT):
        return column
    if kind in ("DOUBLE", "FLOAT"):
        return f"CASE WHEN NOT isnan({column}) THEN CAST({column} AS {dialect.text_type}) END"
    if kind == "BOOLEAN":  # Python's spelling, as pandas' astype(str) has it
        return f"CASE WHEN {column} THEN 'True' WHEN NOT {column} THEN 'False' END"
    return f"CAST({column} AS {dialect.text_type})"


def quote(identifier: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: str, dialect: Dialect = DUCKDB) -> str:
    """A SQL string literal (Spark reads a backslash as an escape: it is doubled there)."""
    if dialect.spark:
        value = value.replace("\\", "\\\\")
    return "'" + value.replace("'", "''") + "'"


def _numeric_bins(feature: Mapping[str, Any]) -> int:
    n_bins = len(feature["point_masses"]) + len(feature["edges"]) + 2
    check_bins(feature, n_bins)
    return n_bins


def _categorical_bins(feature: Mapping[str, Any]) -> int:
    n_bins = len(list(feature["labels"])[:-2]) + 2
    check_bins(feature, n_bins)
    return n_bins


def _finite(number: str, dialect: Dialect) -> str:
    # Infinite numbers and NaN are missing, as in `as_numeric`.
    return f"CASE WHEN {dialect.finite(number)} THEN {number} END"


def _mass_bin(v: str, masses: list[float]) -> str:
    """The point mass of `v`, or NULL: as `_numeric_counts`, the nearest mass at or above the
    value if it is within np.isclose's tolerance, else the one below if that is."""

    def near(index: int) -> str:
        return f"abs({_double(masses[index])} - {v}) <= {_ATOL} + {_RTOL} * abs({v})"

    branches: list[str] = []
    for j, mass in enumerate(masses):
        tests = [f"WHEN {near(j)} THEN {j}"]
        if j > 0:
            tests.append(f"WHEN {near(j - 1)} THEN {j - 1}")
        branches.append(f"WHEN {v} <= {_double(mass)} THEN CASE {' '.join(tests)} END")
    last = len(masses) - 1
    return f"CASE {' '.join(branches)} ELSE CASE WHEN {near(last)} THEN {last} END END"


def _interval_bin(v: str, edges: list[float], offset: int) -> str:
    # Right-closed intervals (e[i-1], e[i]]: a value equal to an edge goes in the lower bin.
    if not edges:
        return str(offset)
    whens = " ".join(f"WHEN {v} <= {_double(edge)} THEN {offset + i}" for i, edge in enumerate(edges))
    return f"CASE {whens} ELSE {offset + len(edges)} END"


def _double(value: Any) -> str:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"a profile's bin edge must be finite, got {number!r}")
    # Parsed from its shortest round-trip text: exactly the float the profile holds.
    return f"CAST('{number!r}' AS DOUBLE)"


def _string_list(values: Sequence[str], dialect: Dialect) -> str:
    return dialect.string_list([literal(value, dialect) for value in values])


def _group_literal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a group key must be an int (a model version), got {value!r}")
    return str(value)
