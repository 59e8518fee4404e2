"""A window of the prediction log measured where it lives: DuckDB collapses the window to value
frequencies in one scan, bins them against the reference profile of each version that served
it, and joins the labels, over the log's own files.

Only aggregates come back (bin counts per version, the metric): never the window's rows, nor
its labelled rows. The numbers equal what the same statistics give on the window read into
pandas (`modelloop.stats.count_frame`, `modelloop.stats.score`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelloop.stats import FeatureCounts
from modelloop.stats.metrics import score_sql
from modelloop.stats.sql import CountQueries, DistinctValues, count_queries, quote
from modelloop.store.logs import LABEL_SEQ, MODEL_VERSION, PREDICTION, RECEIVED_AT, LogViews

#: DuckDB's integer types: ids of two integer types join as numbers, anything else as text.
_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
             "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}


@dataclass
class VersionCounts:
    """The rows one model version served, counted against that version's own profile."""

    version: int
    rows: int
    profile: Mapping[str, Any]
    counts: dict[str, FeatureCounts]


@dataclass
class WindowStats:
    """What monitoring needs of a window, and nothing of its rows."""

    n_rows: int = 0
    #: Per version that served rows, oldest first: drift is measured against its own profile.
    versions: list[VersionCounts] = field(default_factory=list)
    #: The newest version's profile, and every row of the window counted against it (quality).
    latest_profile: Mapping[str, Any] | None = None
    quality: dict[str, FeatureCounts] = field(default_factory=dict)
    #: Rows whose label had arrived by as-of (the label delay), and the metric's SQL row over
    #: them (`modelloop.stats.metrics.score_from_row` reads it): the rows stay in DuckDB.
    labelled: int = 0
    metric_row: tuple[Any, ...] | None = None
    #: Rows with a stored label, counted only when none of them is old enough to count.
    arrived: int = 0


def measure_window(
    views: LogViews,
    *,
    profiles: Callable[[int], Mapping[str, Any]],
    id_column: str,
    timestamp: str,
    target: str,
    labelled_until: datetime,
    metric: str,
) -> WindowStats:
    """The statistics of the `predictions` view, and its labels received by now.

    Args:
        views: The logs' views, the window already applied (`LogStore.query`).
        profiles: The reference profile of a model version.
        labelled_until: Only rows with a timestamp at or before this count as labelled: a label
            for a later row could not have arrived by as-of (`monitoring.label_delay`).
        metric: The metric computed on the labelled rows.
    """
    connection = views.connection
    columns = views.columns(views.predictions)
    ident = quote(id_column)
    # Integer ids: their range lets the label scan skip files of other windows (Parquet stats).
    numbered = _base(columns.get(id_column, "")) in _INTEGERS
    found = connection.execute(
        f"SELECT {MODEL_VERSION}, count(*){f', min({ident}), max({ident})' if numbered else ''} "
        f"FROM {views.predictions} GROUP BY 1 ORDER BY 1"
    ).fetchall()
    groups = [(None if row[0] is None else int(row[0]), int(row[1])) for row in found]
    stats = WindowStats(n_rows=sum(count for _version, count in groups))
    if stats.n_rows == 0:
        return stats
    id_range = (min(int(row[2]) for row in found), max(int(row[3]) for row in found)) if numbered else None
    served = [version for version, _count in groups if version is not None]
    if served:
        newest = max(served)
        own = {version: profiles(version) for version in served}
        stats.latest_profile = own[newest]
        names = [
            str(name)
            for profile in own.values()
            for name in profile.get("features", {})
            if name in columns
        ]
        distinct = DistinctValues(
            tuple(dict.fromkeys(names)),
            columns,
            # One scan either way; the version is a key only when there are several.
            group=MODEL_VERSION if len(groups) > 1 else None,
        )
        if distinct.features:  # else no profiled feature was logged: nothing to count
            connection.execute(distinct.create(views.predictions))
            stats.quality = _run(views, count_queries(stats.latest_profile, distinct, every_group=True))
        for version, count in groups:
            if version is None:
                continue
            if distinct.group is None or not distinct.features:
                counted = stats.quality
            else:
                counted = _run(views, count_queries(own[version], distinct, version), bins_only=True)
            stats.versions.append(VersionCounts(version, count, own[version], counted))
    _join_labels(views, columns, stats, id_column, timestamp, target, labelled_until, id_range, metric)
    return stats


def _run(views: LogViews, queries: CountQueries, *, bins_only: bool = False) -> dict[str, FeatureCounts]:
    """Run the counting queries; their rows are small (bins, extremes, a few categories)."""

    def rows(sql: str | None) -> list[Any]:
        return [] if sql is None else list(views.connection.execute(sql).fetchall())

    if bins_only:
        return queries.read(rows(queries.bins))
    return queries.read(rows(queries.bins), rows(queries.ranges), rows(queries.unseen))


def _join_labels(
    views: LogViews,
    columns: Mapping[str, str],
    stats: WindowStats,
    id_column: str,
    timestamp: str,
    target: str,
    labelled_until: datetime,
    id_range: tuple[int, int] | None,
    metric: str,
) -> None:
    """Each row's newest label, joined on the id in DuckDB, and the metric on them there."""
    label_columns = views.columns(views.labels)
    ident = quote(id_column)
    left, right = columns.get(id_column, "VARCHAR"), label_columns.get(id_column, "VARCHAR")
    # Ids compare as text ("42" is 42) unless both sides hold numbers of one kind.
    typed = left == right or (_base(left) in _INTEGERS and _base(right) in _INTEGERS)
    key_p = f"p.{ident}" if typed else f"CAST(p.{ident} AS VARCHAR)"
    key_l = ident if typed else f"CAST({ident} AS VARCHAR)"
    # Only labels that can match: the window's id range, when ids are numbers on both sides.
    within = (
        f"WHERE {ident} BETWEEN {id_range[0]} AND {id_range[1]} "
        if id_range is not None and typed and _base(right) in _INTEGERS
        else ""
    )
    joined = (
        f"WITH latest AS (SELECT {key_l} AS k, "
        # The newest (_received_at, _seq) wins, as one number (a struct compares slower); _seq,
        # a row's place in one write, stays below 2**32.
        f"arg_max({quote(target)}, epoch_us({RECEIVED_AT})::HUGEINT * 4294967296 + {LABEL_SEQ}) AS y "
        f"FROM {views.labels} {within}GROUP BY k) "
        # A missing prediction comes back as NaN, which the metric refuses by name.
        f"SELECT CAST(l.y AS DOUBLE) AS y, "
        f"COALESCE(CAST(p.{PREDICTION} AS DOUBLE), CAST('NaN' AS DOUBLE)) AS p, p.{quote(timestamp)} AS t "
        f"FROM {views.predictions} AS p JOIN latest AS l ON {key_p} = l.k"
    )
    cutoff = f"TIMESTAMP '{labelled_until.isoformat(sep=' ')}'"
    connection = views.connection
    labelled = f"(SELECT y, p FROM ({joined}) WHERE t <= {cutoff})"
    stats.metric_row = connection.execute(score_sql(metric, labelled)).fetchone()
    stats.labelled = int(stats.metric_row[0]) if stats.metric_row else 0
    if stats.labelled == 0:
        row = connection.execute(f"SELECT count(*) FROM ({joined})").fetchone()
        stats.arrived = int(row[0]) if row else 0
    else:
        stats.arrived = stats.labelled


def _base(duckdb_type: str) -> str:
    return duckdb_type.upper().split("(")[0]
