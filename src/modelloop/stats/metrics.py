"""The metrics, computed the same way in training, gating and monitoring: with numpy on arrays
(`score`), and in SQL where the labelled rows are (`score_sql`, for monitoring, whose labelled
rows stay in DuckDB however many there are).

Why not scikit-learn: monitoring runs on every window and must start fast; importing
scikit-learn's metrics costs about a second before any data is read. Each metric gives
scikit-learn's number (to rounding; the tests compare all three) on the inputs modelloop feeds
it: labels 0/1 for a classifier with the positive class's probability, real values for a
regressor. The two forms of each metric sit side by side below, so they change together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from modelloop.errors import DataError

#: Metrics that need both classes among the labels; on one class they are undefined (None).
NEEDS_BOTH_CLASSES = frozenset({"roc_auc", "average_precision", "log_loss"})
#: Clipping for log loss, so a confident wrong answer costs a large but finite amount.
LOG_LOSS_EPS = 1e-15


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

#: The SQL of each metric over a relation `r(y DOUBLE, p DOUBLE)`: one value. Where a metric is
#: undefined (no rows, one class) the value is meaningless and `score_from_row` says None.
#: Sums are Kahan sums (`fsum`): as close to numpy's pairwise sums as the tests need.
_SQL: dict[str, str] = {
    # Mann-Whitney over the distinct scores: positives (the larger label) outranking negatives,
    # ties counting half; the same sum of ranks as `average_ranks`, grouped.
    "roc_auc": """
        SELECT fsum(pos * (below + neg / 2)) / (fsum(pos) * fsum(neg)) FROM (
            SELECT pos, neg, fsum(neg) OVER (ORDER BY p ROWS UNBOUNDED PRECEDING) - neg AS below
            FROM (SELECT p, count(*) FILTER (WHERE y = (SELECT max(y) FROM r))::DOUBLE AS pos,
                         count(*) FILTER (WHERE y <> (SELECT max(y) FROM r))::DOUBLE AS neg
                  FROM r GROUP BY p))""",
    # One recall step per distinct score, from the highest down.
    "average_precision": """
        SELECT fsum(pos * tps / seen) / fsum(pos) FROM (
            SELECT pos, fsum(pos) OVER w AS tps, fsum(n) OVER w AS seen
            FROM (SELECT p, count(*) FILTER (WHERE y = 1)::DOUBLE AS pos, count(*)::DOUBLE AS n
                  FROM r GROUP BY p)
            WINDOW w AS (ORDER BY p DESC ROWS UNBOUNDED PRECEDING))""",
    "log_loss": f"""
        SELECT -fsum(CASE WHEN y = 1 THEN ln(c) ELSE ln(1 - c) END) / count(*) FROM (
            SELECT y, least(greatest(p, {LOG_LOSS_EPS!r}), 1 - {LOG_LOSS_EPS!r}) AS c FROM r)""",
    "brier": "SELECT fsum(power((CASE WHEN y = 1 THEN 1.0 ELSE 0.0 END) - p, 2)) / count(*) FROM r",
    "accuracy": """
        SELECT count(*) FILTER (WHERE (y = 1) = (p >= 0.5) AND y IN (0, 1))::DOUBLE / count(*)
        FROM r""",
    "f1": """
        SELECT CASE WHEN 2 * tp + wrong = 0 THEN 0.0 ELSE 2.0 * tp / (2 * tp + wrong) END FROM (
            SELECT count(*) FILTER (WHERE y = 1 AND p >= 0.5) AS tp,
                   count(*) FILTER (WHERE (y = 1) <> (p >= 0.5)) AS wrong FROM r)""",
    "rmse": "SELECT sqrt(fsum(power(y - p, 2)) / count(*)) FROM r",
    "mae": "SELECT fsum(abs(y - p)) / count(*) FROM r",
    # A constant target: 1.0 when predicted exactly, else 0.0 (as `r2`).
    "r2": """
        SELECT CASE WHEN total = 0 THEN (CASE WHEN residual = 0 THEN 1.0 ELSE 0.0 END)
                    ELSE 1 - residual / total END FROM (
            SELECT fsum(power(y - p, 2)) AS residual,
                   fsum(power(y - (SELECT fsum(y) / count(*) FROM r), 2)) AS total FROM r)""",
}


def score_sql(metric: str, rows: str) -> str:
    """SQL giving one row for `score_from_row`: the rows, the missing or infinite labels and
    predictions, whether there are two labels or more (2) or one (1), and the metric over
    `rows` (a table, a view or a parenthesized query with columns `y` and `p`, both DOUBLE)."""
    if metric not in _SQL:
        raise ValueError(f"unknown metric {metric!r}: expected one of {', '.join(sorted(METRICS))}")
    return (
        f"WITH r AS (SELECT y, p FROM {rows}) "
        "SELECT count(*), count(*) FILTER (WHERE y IS NULL OR NOT isfinite(y)), "
        "count(*) FILTER (WHERE p IS NULL OR NOT isfinite(p)), "
        # Two labels or more, without a distinct count over every row: min < max.
        "CASE WHEN min(y) < max(y) THEN 2 ELSE 1 END, "
        f"({_SQL[metric]}) FROM r"
    )


def score_from_row(metric: str, row: tuple[Any, ...] | None) -> float | None:
    """The metric from `score_sql`'s row, with `score`'s rules: None on no rows or one class
    where both are needed; a DataError naming missing labels or predictions."""
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
}
