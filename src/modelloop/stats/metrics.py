"""The metrics, computed the same way in training, gating and monitoring: with numpy on arrays
(`score`), and in SQL where the labelled rows are (`scores_sql`, for monitoring, whose labelled
rows stay in DuckDB however many there are).

Why not scikit-learn: monitoring runs on every window and must start fast; importing
scikit-learn's metrics costs about a second before any data is read. Each metric gives
scikit-learn's number (to rounding; the tests compare all three) on the inputs modelloop feeds
it: labels 0/1 for a classifier with the positive class's probability, real values for a
regressor. The two forms of each metric sit side by side below, so they change together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from modelloop.errors import DataError
from modelloop.stats.dialect import DUCKDB, Dialect
from modelloop.stats.sql import quote

#: Metrics that need both classes among the labels; on one class they are undefined (None).
NEEDS_BOTH_CLASSES = frozenset({"roc_auc", "average_precision", "log_loss"})
#: Clipping for log loss, so a confident wrong answer costs a large but finite amount.
LOG_LOSS_EPS = 1e-15
#: The smallest denominator of a percentage error (scikit-learn's: a zero target stays finite).
MAPE_EPS = float(np.finfo(np.float64).eps)
#: Inner edges of the calibration bins: ten of equal width, [0, 0.1], (0.1, 0.2], ..., (0.9, 1]
#: (scikit-learn's `calibration_curve` binning; values outside [0, 1] join the end bins).
CALIBRATION_EDGES = np.linspace(0.0, 1.0, 11)[1:-1]
#: The metrics each task reports, its headline metric first.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("roc_auc", "accuracy", "f1", "log_loss", "calibration_error", "brier"),
    "regression": ("mae", "rmse", "r2", "mape"),
}
#: Metrics CBPE estimates from predicted probabilities alone, without labels (`estimate`).
ESTIMABLE = frozenset({"roc_auc", "accuracy", "f1"})


def score(metric: str, y_true: Any, y_score: Any) -> float | None:
    """The metric on (labels, predictions); None when it is undefined (no rows, one class only).

    Raises:
        ValueError: `metric` is not one modelloop knows.
        DataError: a label or a prediction is missing (NaN) or infinite.
    """
    compute = METRICS.get(metric)
    if compute is None:
        raise ValueError(f"unknown metric {metric!r}: expected one of {', '.join(sorted(METRICS))}")
    truth = np.asarray(y_true, dtype="float64").ravel()
    pred = np.asarray(y_score, dtype="float64").ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"{metric}: {truth.size} labels for {pred.size} predictions")
    if truth.size == 0:
        return None
    for what, values in (("labels", truth), ("predictions", pred)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise DataError(f"cannot compute {metric}: {bad:,} of the {what} are missing or infinite")
    if metric in NEEDS_BOTH_CLASSES and np.unique(truth).size < 2:
        return None
    return float(compute(truth, pred))


def roc_auc(truth: np.ndarray, pred: np.ndarray) -> float:
    """Area under the ROC curve, as the Mann-Whitney statistic: the chance that a positive row
    outranks a negative one, ties counting half. The positive class is the larger label."""
    positive = truth == truth.max()
    n_pos = int(positive.sum())
    n_neg = truth.size - n_pos
    ranks = average_ranks(pred)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(truth: np.ndarray, pred: np.ndarray) -> float:
    """Precision averaged over the recall steps, one step per distinct score (scikit-learn's
    definition: no interpolation)."""
    order = np.argsort(-pred)  # the order within a run of equal scores does not matter
    ranked = pred[order]
    hits = (truth[order] == 1).astype("float64")
    # The last row of each run of equal scores: a threshold admits a whole run at once.
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    tps = np.cumsum(hits)[last]
    seen = last + 1.0
    precision = tps / seen
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def log_loss(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels (0/1) under the predicted probabilities."""
    p = np.clip(pred, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    positive = truth == 1
    return float(-np.mean(np.where(positive, np.log(p), np.log1p(-p))))


def brier(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared distance between the predicted probability and the label (0/1)."""
    return float(np.mean(((truth == 1) - pred) ** 2))


def accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """Share of rows whose label equals the prediction thresholded at 0.5."""
    return float(np.mean(truth == (pred >= 0.5)))


def f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """F1 of the positive class (label 1) at threshold 0.5; 0.0 when there is nothing to score."""
    actual = truth == 1
    called = pred >= 0.5
    tp = int(np.count_nonzero(actual & called))
    wrong = int(np.count_nonzero(actual != called))
    denominator = 2 * tp + wrong
    return 2 * tp / denominator if denominator else 0.0


def rmse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Root mean squared error, in the target's unit."""
    return math.sqrt(float(np.mean((truth - pred) ** 2)))


def mae(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error, in the target's unit."""
    return float(np.mean(np.abs(truth - pred)))


def r2(truth: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination. A constant target gives 1.0 when predicted exactly and 0.0
    otherwise (scikit-learn's `force_finite`), never a division by zero."""
    residual = float(np.sum((truth - pred) ** 2))
    total = float(np.sum((truth - truth.mean()) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def mape(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute percentage error, as a fraction (0.1 is 10%); a target of zero divides by
    `MAPE_EPS` instead, a huge but finite error, as in scikit-learn."""
    return float(np.mean(np.abs(truth - pred) / np.maximum(np.abs(truth), MAPE_EPS)))


def calibration_error(truth: np.ndarray, pred: np.ndarray) -> float:
    """Expected calibration error: over ten equal-width probability bins, the gap between the
    mean probability and the share of positives (label 1), weighted by the bin's rows. Since
    n_b/n * |mean(p_b) - mean(y_b)| = |sum(p_b - y_b)| / n, the sums per bin are enough."""
    bins = np.searchsorted(CALIBRATION_EDGES, pred)  # side="left": 0.1 falls in [0, 0.1]
    gaps = np.bincount(bins, weights=pred - (truth == 1), minlength=CALIBRATION_EDGES.size + 1)
    return float(np.sum(np.abs(gaps)) / truth.size)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, ties sharing the mean of the ranks they span."""
    order = np.argsort(values)  # ties share a rank: their order does not matter
    ordered = values[order]
    # Start of each run of equal values, and one past the end of the last.
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1, ordered.size]
    run_ranks = (starts[:-1] + starts[1:] + 1) / 2.0
    ranks = np.empty(values.size, dtype="float64")
    ranks[order] = np.repeat(run_ranks, np.diff(starts))
    return ranks


# -- the same metrics in SQL ------------------------------------------------------------------

#: The SQL of each metric over a relation `r(g, y DOUBLE, p DOUBLE)`: one row `(g, v)` per group
#: `g` (a constant when there are no groups). Where a metric is undefined (no rows, one class)
#: the value is meaningless and `score_from_row` says None (a division by zero is guarded: Spark
#: refuses one). Sums are Kahan sums (`fsum`; Spark's plain `sum`): as close to numpy's pairwise
#: sums as the tests need.
_SQL: dict[str, str] = {
    # Mann-Whitney over the distinct scores: positives (the larger label) outranking negatives,
    # ties counting half; the same sum of ranks as `average_ranks`, grouped.
    "roc_auc": """
        SELECT g, fsum(pos * (below + neg / 2)) / nullif(fsum(pos) * fsum(neg), 0) AS v FROM (
            SELECT g, pos, neg,
                   fsum(neg) OVER (PARTITION BY g ORDER BY p ROWS UNBOUNDED PRECEDING) - neg AS below
            FROM (SELECT g, p, count(*) FILTER (WHERE y = top)::DOUBLE AS pos,
                         count(*) FILTER (WHERE y <> top)::DOUBLE AS neg
                  FROM (SELECT g, y, p, max(y) OVER (PARTITION BY g) AS top FROM r) GROUP BY g, p))
        GROUP BY g""",
    # One recall step per distinct score, from the highest down.
    "average_precision": """
        SELECT g, fsum(pos * tps / seen) / nullif(fsum(pos), 0) AS v FROM (
            SELECT g, pos, fsum(pos) OVER w AS tps, fsum(n) OVER w AS seen
            FROM (SELECT g, p, count(*) FILTER (WHERE y = 1)::DOUBLE AS pos, count(*)::DOUBLE AS n
                  FROM r GROUP BY g, p)
            WINDOW w AS (PARTITION BY g ORDER BY p DESC ROWS UNBOUNDED PRECEDING))
        GROUP BY g""",
    "log_loss": f"""
        SELECT g, -fsum(CASE WHEN y = 1 THEN ln(c) ELSE ln(1 - c) END) / count(*) AS v FROM (
            SELECT g, y, least(greatest(p, {LOG_LOSS_EPS!r}), 1 - {LOG_LOSS_EPS!r}) AS c FROM r)
        GROUP BY g""",
    "brier": """
        SELECT g, fsum(power((CASE WHEN y = 1 THEN 1.0 ELSE 0.0 END) - p, 2)) / count(*) AS v
        FROM r GROUP BY g""",
    "accuracy": """
        SELECT g, count(*) FILTER (WHERE (y = 1) = (p >= 0.5) AND y IN (0, 1))::DOUBLE / count(*)
               AS v
        FROM r GROUP BY g""",
    # A double divisor: Spark reads `2.0` as a decimal, and a decimal quotient keeps 6 places.
    "f1": """
        SELECT g, CASE WHEN 2 * tp + wrong = 0 THEN 0.0 ELSE 2 * tp / (2 * tp + wrong)::DOUBLE END AS v
        FROM (SELECT g, count(*) FILTER (WHERE y = 1 AND p >= 0.5) AS tp,
                     count(*) FILTER (WHERE (y = 1) <> (p >= 0.5)) AS wrong FROM r GROUP BY g)""",
    # The bin sums of `calibration_error`, with the same edges (a value on an edge goes below).
    "calibration_error": f"""
        SELECT g, fsum(abs(gap)) / fsum(n) AS v FROM (
            SELECT g, fsum(p - (CASE WHEN y = 1 THEN 1.0 ELSE 0.0 END)) AS gap, count(*)::DOUBLE AS n
            FROM r GROUP BY g, CASE {" ".join(
                f"WHEN p <= {float(edge)!r} THEN {i}" for i, edge in enumerate(CALIBRATION_EDGES)
            )} ELSE {CALIBRATION_EDGES.size} END)
        GROUP BY g""",
    "rmse": "SELECT g, sqrt(fsum(power(y - p, 2)) / count(*)) AS v FROM r GROUP BY g",
    "mae": "SELECT g, fsum(abs(y - p)) / count(*) AS v FROM r GROUP BY g",
    "mape": f"""
        SELECT g, fsum(abs(y - p) / greatest(abs(y), {MAPE_EPS!r})) / count(*) AS v
        FROM r GROUP BY g""",
    # A constant target: 1.0 when predicted exactly, else 0.0 (as `r2`).
    "r2": """
        SELECT g, CASE WHEN total = 0 THEN (CASE WHEN residual = 0 THEN 1.0 ELSE 0.0 END)
                       ELSE 1 - residual / total END AS v FROM (
            SELECT g, fsum(power(y - p, 2)) AS residual, fsum(power(y - y_mean, 2)) AS total FROM (
                SELECT g, y, p, fsum(y) OVER (PARTITION BY g) / count(*) OVER (PARTITION BY g) AS y_mean
                FROM r)
            GROUP BY g)""",
}


def _checks(dialect: Dialect) -> str:
    """The checks `score_from_row` and `read_scores` apply, per group: labels and predictions
    missing or infinite, and whether there are two labels or more (2) or one (1), found without
    a distinct count over every row (min < max)."""
    return (
        f"count(*) FILTER (WHERE y IS NULL OR NOT {dialect.finite('y')}) AS _bad_y, "
        f"count(*) FILTER (WHERE p IS NULL OR NOT {dialect.finite('p')}) AS _bad_p, "
        "CASE WHEN min(y) < max(y) THEN 2 ELSE 1 END AS _classes"
    )


def score_from_row(metric: str, row: tuple[Any, ...] | None) -> float | None:
    """The metric from a row of `scores_sql` (its checks, then the value), with `score`'s rules:
    None on no rows or one class where both are needed; a DataError naming missing labels or
    predictions."""
    if row is None or not row[0]:
        return None
    for what, bad in (("labels", row[1]), ("predictions", row[2])):
        if bad:
            raise DataError(
                f"cannot compute {metric}: {int(bad):,} of the {what} are missing or infinite"
            )
    if metric in NEEDS_BOTH_CLASSES and int(row[3]) < 2:
        return None
    value = row[4]
    return None if value is None else float(value)


def scores_sql(
    metrics: Sequence[str], relation: str, *, group: str | None = None, dialect: Dialect = DUCKDB
) -> str:
    """One statement computing several metrics over `relation` (columns `y`, `p` and `group`),
    in `dialect`.

    Without `group` it gives one row, `(n, metric..., checks...)`; with it one row per value of
    the `group` column, `(g, n, metric..., checks...)`, ordered by that value. The three trailing
    checks are for `read_scores`, which reads these rows.
    """
    _check_metrics(metrics)
    key = quote(group) if group is not None else "0"
    parts = [f"r AS (SELECT {key} AS g, y, p FROM {relation})"]
    # Aggregates without GROUP BY give a row even when there are no rows: n = 0, not no answer.
    grouping = " GROUP BY g" if group is not None else ""
    parts.append(f"_base AS (SELECT {'g' if group is not None else '0 AS g'}, count(*) AS n, "
                 f"{_checks(dialect)} FROM r{grouping})")
    parts += [f"_m{i} AS ({dialect.sums(_SQL[metric])})" for i, metric in enumerate(metrics)]
    values = "".join(f", _m{i}.v" for i in range(len(metrics)))
    joins = "".join(
        f" LEFT JOIN _m{i} ON _m{i}.g IS NOT DISTINCT FROM _base.g" for i in range(len(metrics))
    )
    lead = "_base.g, " if group is not None else ""
    order = " ORDER BY _base.g" if group is not None else ""
    # The checks sit at the end, after the columns a reader of the rows cares about: #2..#4.
    return (
        f"WITH {', '.join(parts)} SELECT {lead}_base.n{values}, _base._bad_y, _base._bad_p, _base._classes "
        f"FROM _base{joins}{order}"
    )


def read_scores(
    metrics: Sequence[str], rows: Iterable[tuple[Any, ...]], *, grouped: bool = False
) -> list[tuple[Any, ...]]:
    """The metrics from the rows of `scores_sql`, with `score`'s rules (None on no rows or one
    class where both are needed; a DataError naming missing labels or predictions).

    Returns:
        Without groups one `(n, {metric: value})`; with them (`grouped`, as the rows were made
        with a group) one `(g, n, {metric: value})` per group, in the rows' order.
    """
    found: list[tuple[Any, ...]] = []
    for row in rows:
        lead, values = (row[:1], row[1:]) if grouped else ((), row)
        found.append((*lead, int(values[0]), _read_scores_row(metrics, tuple(values))))
    return found


def _read_scores_row(metrics: Sequence[str], row: tuple[Any, ...]) -> dict[str, float | None]:
    n_metrics = len(metrics)
    checks = (row[0], *row[1 + n_metrics:])
    return {
        metric: score_from_row(metric, (*checks, value))
        for metric, value in zip(metrics, row[1:1 + n_metrics], strict=True)
    }


def _check_metrics(metrics: Sequence[str]) -> None:
    unknown = [metric for metric in metrics if metric not in _SQL]
    if unknown:
        raise ValueError(
            f"unknown metric {unknown[0]!r}: expected one of {', '.join(sorted(METRICS))}"
        )


# -- estimated without labels (CBPE) ----------------------------------------------------------
# Confidence-based performance estimation (NannyML's CBPE): when the predicted probabilities are
# calibrated, a row with probability p is a positive with chance p, so the expected confusion
# counts, and so the metrics, follow from the probabilities alone, weeks before labels arrive.


def estimate(metric: str, p: Any) -> float | None:
    """The expected value of `metric` on rows whose labels are not known yet, from the predicted
    probabilities of the positive class alone, assuming they are calibrated.

    Returns:
        None on no rows, and for roc_auc when every probability is 0 or every one is 1.

    Raises:
        ValueError: `metric` is not one CBPE estimates.
        DataError: a probability is missing, infinite or outside [0, 1].
    """
    _check_estimable([metric])
    prob = np.asarray(p, dtype="float64").ravel()
    if prob.size == 0:
        return None
    bad = int(np.count_nonzero(~((prob >= 0) & (prob <= 1))))  # NaN fails both comparisons
    if bad:
        raise DataError(
            f"cannot estimate {metric}: {bad:,} of the probabilities are missing or outside [0, 1]"
        )
    called = prob >= 0.5
    if metric == "accuracy":
        return float(np.mean(np.where(called, prob, 1.0 - prob)))
    if metric == "f1":
        tp = float(np.sum(prob[called]))
        wrong = float(np.sum(1.0 - prob[called])) + float(np.sum(prob[~called]))
        return 2 * tp / (2 * tp + wrong) if 2 * tp + wrong > 0 else 0.0
    # roc_auc: each row is a positive of weight p and a negative of weight 1 - p, ranked by p.
    scores, index = np.unique(prob, return_inverse=True)
    pos = np.bincount(index, weights=prob, minlength=scores.size)
    neg = np.bincount(index, weights=1.0 - prob, minlength=scores.size)
    below = np.cumsum(neg) - neg
    pairs = float(pos.sum()) * float(neg.sum())
    return float(np.sum(pos * (below + neg / 2.0)) / pairs) if pairs > 0 else None


#: The SQL of each estimate over a relation `r(p DOUBLE)`: one value, as `estimate`.
_ESTIMATE_SQL: dict[str, str] = {
    "roc_auc": """
        SELECT fsum(pos * (below + neg / 2)) / nullif(fsum(pos) * fsum(neg), 0) FROM (
            SELECT pos, neg, fsum(neg) OVER (ORDER BY p ROWS UNBOUNDED PRECEDING) - neg AS below
            FROM (SELECT p, fsum(p) AS pos, fsum(1 - p) AS neg FROM r GROUP BY p))""",
    "accuracy": "SELECT fsum(CASE WHEN p >= 0.5 THEN p ELSE 1 - p END) / nullif(count(*), 0) FROM r",
    "f1": """
        SELECT CASE WHEN 2 * tp + wrong = 0 THEN 0.0 ELSE 2 * tp / (2 * tp + wrong) END FROM (
            SELECT coalesce(fsum(p) FILTER (WHERE p >= 0.5), 0) AS tp,
                   coalesce(fsum(CASE WHEN p >= 0.5 THEN 1 - p ELSE p END), 0) AS wrong FROM r)""",
}


def estimate_sql(metrics: Sequence[str], relation: str, *, dialect: Dialect = DUCKDB) -> str:
    """SQL giving one row for `read_estimates`: the rows, the probabilities missing or
    outside [0, 1], and each metric's estimate over `relation` (a column `p`, DOUBLE), in
    `dialect`."""
    _check_estimable(metrics)
    values = "".join(f", ({dialect.sums(_ESTIMATE_SQL[metric])})" for metric in metrics)
    return (
        f"WITH r AS (SELECT p FROM {relation}) SELECT count(*), "
        f"count(*) FILTER (WHERE p IS NULL OR NOT (p >= 0 AND p <= 1)){values} FROM r"
    )


def read_estimates(
    metrics: Sequence[str], row: tuple[Any, ...] | None
) -> dict[str, float | None]:
    """The estimates from `estimate_sql`'s row, with `estimate`'s rules."""
    if row is None or not row[0]:
        return dict.fromkeys(metrics)
    if row[1]:
        raise DataError(
            f"cannot estimate {', '.join(metrics)}: {int(row[1]):,} of the probabilities are "
            "missing or outside [0, 1]"
        )
    return {
        metric: None if value is None else float(value)
        for metric, value in zip(metrics, row[2:], strict=True)
    }


def _check_estimable(metrics: Sequence[str]) -> None:
    unknown = [metric for metric in metrics if metric not in ESTIMABLE]
    if unknown:
        raise ValueError(
            f"cannot estimate {unknown[0]!r} without labels: CBPE estimates "
            f"{', '.join(sorted(ESTIMABLE))}"
        )


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": roc_auc,
    "average_precision": average_precision,
    "log_loss": log_loss,
    "brier": brier,
    "accuracy": accuracy,
    "f1": f1,
    "rmse": rmse,
    "mae": mae,
    "r2": r2,
    "mape": mape,
    "calibration_error": calibration_error,
}
