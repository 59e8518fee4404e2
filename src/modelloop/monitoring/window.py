"""A window of the prediction log measured where it lives: DuckDB collapses the window to value
frequencies in one scan, bins them against the reference profile of each version that served
it, and joins the labels, over the log's own files.

Only aggregates come back (bin counts per version, the metric): never the window's rows, nor
its labelled rows. The numbers equal what the same statistics give on the window read into
pandas (`modelloop.stats.count_frame`, `modelloop.stats.score`).

The same queries run on Spark when the views are Spark's (`monitoring.engine: spark`): they are
written once and asked for in the views' dialect (`modelloop.stats.dialect`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelloop.stats import FeatureCounts
from modelloop.stats.dialect import Dialect, dialect
from modelloop.stats.metrics import estimate_sql, read_estimates, read_scores, scores_sql
from modelloop.stats.sql import CountQueries, DistinctValues, as_text, count_queries, numeric_bin, quote
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
    #: Rows whose label had arrived by as-of (the label delay): they stay in DuckDB.
    labelled: int = 0
    #: Rows with a stored label, counted only when none of them is old enough to count.
    arrived: int = 0
    #: Rows old enough for their label to have arrived by as-of (`monitoring.label_delay`).
    eligible: int = 0
    #: Every metric of the task on the labelled rows (None where undefined).
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: Estimated from the predicted probabilities alone (CBPE), over every row of the window.
    estimated: dict[str, float | None] = field(default_factory=dict)
    #: Per segment value: column, value, rows, labelled, metrics (`monitoring.segments`).
    segments: list[dict[str, Any]] = field(default_factory=list)


def measure_window(
    views: LogViews,
    *,
    profiles: Callable[[int], Mapping[str, Any]],
    id_column: str,
    timestamp: str,
    target: str,
    labelled_until: datetime,
    metric: str,
    metrics: Sequence[str] = (),
    estimable: Sequence[str] = (),
    segments: Sequence[str] = (),
    max_segments: int = 20,
    min_labelled: int = 1,
) -> WindowStats:
    """The statistics of the `predictions` view, and its labels received by now.

    Args:
        views: The logs' views, the window already applied (`LogStore.query`).
        profiles: The reference profile of a model version.
        labelled_until: Only rows with a timestamp at or before this count as labelled: a label
            for a later row could not have arrived by as-of (`monitoring.label_delay`).
        metric: The primary metric computed on the labelled rows.
        metrics: Every metric to compute on them (the task's).
        estimable: Metrics to estimate without labels from the predicted probabilities (CBPE),
            while fewer than `min_labelled` rows are labelled: once labels say, they are not
            estimated.
        segments: Columns whose values each get their own rows, labels and metrics.
    """
    connection = views.connection
    sql = dialect(views.dialect)
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
        # The model's output is counted too, against its holdout predictions (prediction drift).
        own = {version: with_prediction(profiles(version)) for version in served}
        stats.latest_profile = profiles(newest)
        # The output is counted straight from its column: its values are nearly all distinct,
        # so collapsing them first (as the features are) would copy the window.
        names = [
            str(name)
            for profile in own.values()
            for name in profile.get("features", {})
            if name in columns and name != PREDICTION
        ]
        distinct = DistinctValues(
            tuple(dict.fromkeys(names)),
            columns,
            # One scan either way; the version is a key only when there are several.
            group=MODEL_VERSION if len(groups) > 1 else None,
            dialect=sql,
        )
        if distinct.features:  # else no profiled feature was logged: nothing to count
            connection.execute(distinct.create(views.predictions))
            stats.quality = _run(views, count_queries(own[newest], distinct, every_group=True))
        for version, count in groups:
            if version is None:
                continue
            if distinct.group is None or not distinct.features:
                counted = stats.quality
            else:
                counted = _run(views, count_queries(own[version], distinct, version), bins_only=True)
            stats.versions.append(VersionCounts(version, count, own[version], counted))
        if PREDICTION in columns:
            _count_predictions(views, sql, stats, own, newest, several=len(groups) > 1)
    _join_labels(
        views, sql, columns, stats, id_column, timestamp, target, labelled_until, id_range,
        metrics=list(dict.fromkeys([metric, *metrics])),
        segments=[s for s in segments if s in columns],
        max_segments=max_segments,
    )
    if estimable and stats.labelled < min_labelled:
        relation = (
            f"(SELECT CAST({PREDICTION} AS DOUBLE) AS p FROM {views.predictions} "
            f"WHERE {PREDICTION} IS NOT NULL)"
        )
        row = connection.execute(estimate_sql(estimable, relation, dialect=sql)).fetchone()
        stats.estimated = read_estimates(estimable, row)
    return stats


def _count_predictions(
    views: LogViews,
    sql: Dialect,
    stats: WindowStats,
    own: Mapping[int, Mapping[str, Any]],
    newest: int,
    *,
    several: bool,
) -> None:
    """Count the prediction column against each version's holdout predictions (and every row
    against the newest's, as the features are for quality), in one scan per profile set."""
    wanted = {v: p["features"][PREDICTION] for v, p in own.items() if PREDICTION in p.get("features", {})}
    if not wanted:
        return
    per_version = " ".join(
        f"WHEN {MODEL_VERSION} = {int(v)} THEN {numeric_bin(feature, 'v')}" for v, feature in wanted.items()
    )
    rows = views.connection.execute(
        f"SELECT g, b, count(*), min(v), max(v) FROM ("
        f"SELECT {MODEL_VERSION} AS g, CASE {per_version} END AS b, v "
        f"FROM (SELECT {MODEL_VERSION}, {_predicted(sql)} AS v FROM {views.predictions})) GROUP BY g, b"
    ).fetchall()
    by_version: dict[int, list[tuple[int, int, float | None, float | None]]] = {}
    for g, b, n, low, high in rows:
        if g is not None and b is not None:
            by_version.setdefault(int(g), []).append((int(b), int(n), low, high))
    for served in stats.versions:
        feature = wanted.get(served.version)
        if feature is not None:
            served.counts[PREDICTION] = _numeric_counts(feature, by_version.get(served.version, []))
    if newest in wanted and not several:
        stats.quality[PREDICTION] = _numeric_counts(wanted[newest], by_version.get(newest, []))


def _predicted(sql: Dialect) -> str:
    """The prediction as a number; a non-finite one is missing, as for numeric features."""
    number = f"CAST({PREDICTION} AS DOUBLE)"
    return f"CASE WHEN {sql.finite(number)} THEN {number} END"


def _numeric_counts(
    feature: Mapping[str, Any], bins: Sequence[tuple[int, int, float | None, float | None]]
) -> FeatureCounts:
    """FeatureCounts of a numeric feature from (bin, rows, smallest, largest) per bin."""
    n_bins = len(feature["point_masses"]) + len(feature["edges"]) + 2
    counts = [0] * n_bins
    for b, n, _low, _high in bins:
        counts[b] += n
    lows = [low for _b, _n, low, _high in bins if low is not None]
    highs = [high for _b, _n, _low, high in bins if high is not None]
    return FeatureCounts(
        PREDICTION, "numeric", tuple(counts),
        low=min(lows) if lows else None, high=max(highs) if highs else None,
    )


def count_period(views: LogViews, profile: Mapping[str, Any]) -> tuple[int, dict[str, FeatureCounts]]:
    """The rows of the `predictions` view, counted against `profile` whichever version served
    them: a reference taken from the log (the same period last year, an earlier window)."""
    connection = views.connection
    sql = dialect(views.dialect)
    row = connection.execute(f"SELECT count(*) FROM {views.predictions}").fetchone()
    rows = int(row[0]) if row else 0
    if rows == 0:
        return 0, {}
    columns = views.columns(views.predictions)
    features = profile.get("features", {})
    names = tuple(str(name) for name in features if name in columns and name != PREDICTION)
    counts: dict[str, FeatureCounts] = {}
    if names:
        distinct = DistinctValues(names, columns, table="_reference", dialect=sql)
        connection.execute(distinct.create(views.predictions))
        counts = _run(views, count_queries({**profile, "features": {n: features[n] for n in names}},
                                           distinct), bins_only=True)
    if PREDICTION in features and PREDICTION in columns:
        found = connection.execute(
            f"SELECT b, count(*), min(v), max(v) FROM (SELECT {numeric_bin(features[PREDICTION], 'v')} "
            f"AS b, v FROM (SELECT {_predicted(sql)} AS v FROM {views.predictions})) GROUP BY b"
        ).fetchall()
        counts[PREDICTION] = _numeric_counts(features[PREDICTION], [tuple(r) for r in found])
    return rows, counts


def with_prediction(profile: Mapping[str, Any]) -> Mapping[str, Any]:
    """`profile` with the model's output among its features (as the log's prediction column),
    when the profile holds the reference predictions."""
    if "prediction" not in profile:
        return profile
    return {**profile, "features": {**profile.get("features", {}), PREDICTION: profile["prediction"]}}


def _run(views: LogViews, queries: CountQueries, *, bins_only: bool = False) -> dict[str, FeatureCounts]:
    """Run the counting queries; their rows are small (bins, extremes, a few categories)."""

    def rows(sql: str | None) -> list[Any]:
        return [] if sql is None else list(views.connection.execute(sql).fetchall())

    if bins_only:
        return queries.read(rows(queries.bins))
    return queries.read(rows(queries.bins), rows(queries.ranges), rows(queries.unseen))


def _join_labels(
    views: LogViews,
    sql: Dialect,
    columns: Mapping[str, str],
    stats: WindowStats,
    id_column: str,
    timestamp: str,
    target: str,
    labelled_until: datetime,
    id_range: tuple[int, int] | None,
    *,
    metrics: Sequence[str],
    segments: Sequence[str],
    max_segments: int,
) -> None:
    """Each row's newest label, joined on the id in DuckDB, and the metrics on them there."""
    label_columns = views.columns(views.labels)
    ident = quote(id_column)
    left, right = columns.get(id_column, "VARCHAR"), label_columns.get(id_column, "VARCHAR")
    # Ids compare as text ("42" is 42) unless both sides hold numbers of one kind.
    typed = left == right or (_base(left) in _INTEGERS and _base(right) in _INTEGERS)
    key_p = f"p.{ident}" if typed else f"CAST(p.{ident} AS {sql.text_type})"
    key_l = ident if typed else f"CAST({ident} AS {sql.text_type})"
    # Only labels that can match: the window's id range, when ids are numbers on both sides.
    within = (
        f"WHERE {ident} BETWEEN {id_range[0]} AND {id_range[1]} "
        if id_range is not None and typed and _base(right) in _INTEGERS
        else ""
    )
    joined = (
        f"WITH latest AS (SELECT {key_l} AS k, "
        # The newest (_received_at, _seq) wins.
        f"{sql.latest(quote(target), RECEIVED_AT, LABEL_SEQ)} AS y "
        f"FROM {views.labels} {within}GROUP BY k) "
        # A missing prediction comes back as NaN, which the metric refuses by name.
        f"SELECT CAST(l.y AS DOUBLE) AS y, "
        f"COALESCE(CAST(p.{PREDICTION} AS DOUBLE), CAST('NaN' AS DOUBLE)) AS p, p.{quote(timestamp)} AS t"
        + "".join(
            f", {_segment_text('p.' + quote(column), columns[column], sql)} AS s{i}"
            for i, column in enumerate(segments)
        )
        + f" FROM {views.predictions} AS p JOIN latest AS l ON {key_p} = l.k"
    )
    cutoff = f"TIMESTAMP '{labelled_until.isoformat(sep=' ')}'"
    connection = views.connection
    row = connection.execute(
        f"SELECT count(*) FROM {views.predictions} WHERE {quote(timestamp)} <= {cutoff}"
    ).fetchone()
    stats.eligible = int(row[0]) if row else 0
    # The labelled rows stay in DuckDB, kept once for every metric and segment read from them.
    kept = "".join(f", s{i}" for i in range(len(segments)))
    connection.execute(
        sql.create_table("_labelled", f"SELECT y, p{kept} FROM ({joined}) WHERE t <= {cutoff}")
    )
    scored = connection.execute(scores_sql(metrics, "_labelled", dialect=sql)).fetchall()
    [(labelled, found)] = read_scores(metrics, scored)
    stats.labelled, stats.metrics = int(labelled), found
    for i, column in enumerate(segments):
        _segments(views, sql, stats, column, f"s{i}", columns[column], metrics, max_segments)
    if stats.labelled == 0:
        row = connection.execute(f"SELECT count(*) FROM ({joined})").fetchone()
        stats.arrived = int(row[0]) if row else 0
    else:
        stats.arrived = stats.labelled


def _segments(
    views: LogViews,
    sql: Dialect,
    stats: WindowStats,
    column: str,
    key: str,
    duckdb_type: str,
    metrics: Sequence[str],
    max_segments: int,
) -> None:
    """Rows, labelled rows and metrics per value of `column`, its largest values first."""
    connection = views.connection
    text = _segment_text(quote(column), duckdb_type, sql)
    sizes = connection.execute(
        f"SELECT {text} AS v, count(*) AS n FROM {views.predictions} GROUP BY v "
        f"ORDER BY n DESC, v LIMIT {int(max_segments)}"
    ).fetchall()
    scored: dict[Any, tuple[int, dict[str, float | None]]] = {}
    if stats.labelled and metrics:
        grouped = f"(SELECT {key} AS g, y, p FROM _labelled)"
        rows = connection.execute(scores_sql(metrics, grouped, group="g", dialect=sql)).fetchall()
        for value, n, found in read_scores(metrics, rows, grouped=True):
            scored[value] = (n, found)
    for value, rows in sizes:
        labelled, found = scored.get(value, (0, {}))
        stats.segments.append(
            {"column": column, "value": value, "rows": int(rows), "labelled": int(labelled), "metrics": found}
        )


def _segment_text(column: str, duckdb_type: str, sql: Dialect) -> str:
    return f"COALESCE({as_text(column, duckdb_type, sql)}, '(missing)')"


def _base(duckdb_type: str) -> str:
    return duckdb_type.upper().split("(")[0]
