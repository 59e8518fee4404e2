"""The metrics, computed with numpy alone, give scikit-learn's numbers (the tests import it as
the reference; the code under test never does)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from modelloop.errors import DataError
from modelloop.stats import METRICS, score


def classification(n: int, seed: int, *, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    if ties:  # a model with coarse outputs: many rows share a score
        p = np.round(p, 1)
    y = (rng.uniform(0, 1, n) < p).astype("int64")
    return y, p


def sklearn_score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    if metric == "roc_auc":
        return float(sk.roc_auc_score(y, p))
    if metric == "average_precision":
        return float(sk.average_precision_score(y, p))
    if metric == "log_loss":
        return float(sk.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))
    if metric == "brier":
        return float(sk.brier_score_loss(y, p))
    if metric == "accuracy":
        return float(sk.accuracy_score(y, p >= 0.5))
    if metric == "f1":
        return float(sk.f1_score(y, p >= 0.5, zero_division=0))
    if metric == "rmse":
        return math.sqrt(sk.mean_squared_error(y, p))
    if metric == "mae":
        return float(sk.mean_absolute_error(y, p))
    if metric == "r2":
        return float(sk.r2_score(y, p))
    if metric == "mape":
        return float(sk.mean_absolute_percentage_error(y, p))
    if metric == "calibration_error":
        return calibration_error_from_sklearn(y, p)
    raise AssertionError(metric)


def calibration_error_from_sklearn(y: np.ndarray, p: np.ndarray) -> float:
    """ECE from scikit-learn's per-bin means (`calibration_curve`), weighted by the rows per bin."""
    from sklearn.calibration import calibration_curve

    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    rows = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], p), minlength=10)
    rows = rows[rows > 0]
    return float(np.sum(rows / y.size * np.abs(prob_pred - prob_true)))


def calibration_error_reference(y: np.ndarray, p: np.ndarray) -> float:
    """ECE written out directly: ten bins [0, 0.1], (0.1, 0.2], ..., mean gap weighted by rows."""
    edges = np.linspace(0, 1, 11)
    total = 0.0
    for i in range(10):
        in_bin = (p >= edges[i]) & (p <= edges[i + 1]) if i == 0 else (p > edges[i]) & (p <= edges[i + 1])
        if in_bin.any():
            total += in_bin.sum() / y.size * abs(p[in_bin].mean() - y[in_bin].mean())
    return total


CLASSIFICATION = ["roc_auc", "average_precision", "log_loss", "brier", "accuracy", "f1", "calibration_error"]
REGRESSION = ["rmse", "mae", "r2", "mape"]


def test_every_metric_is_covered() -> None:
    assert set(METRICS) == {*CLASSIFICATION, *REGRESSION}


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("metric", CLASSIFICATION)
def test_classification_metrics_equal_scikit_learn(metric: str, ties: bool) -> None:
    for seed, n in [(0, 7), (1, 200), (2, 5000)]:
        y, p = classification(n, seed, ties=ties)
        assert score(metric, y, p) == pytest.approx(sklearn_score(metric, y, p), abs=1e-9, rel=1e-9)


def test_extreme_probabilities_are_clipped_like_scikit_learn() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5])  # confidently wrong twice: a large, finite loss
    assert score("log_loss", y, p) == pytest.approx(sklearn_score("log_loss", y, p), rel=1e-12)


@pytest.mark.parametrize("metric", REGRESSION)
def test_regression_metrics_equal_scikit_learn(metric: str) -> None:
    rng = np.random.default_rng(3)
    for n in (3, 100, 4000):
        y = rng.normal(10, 30, n).round(0)  # delays in minutes: ties and negatives
        p = y + rng.normal(0, 12, n)
        assert score(metric, y, p) == pytest.approx(sklearn_score(metric, y, p), abs=1e-9, rel=1e-9)


def test_calibration_error_is_the_weighted_gap_per_bin() -> None:
    for seed, n in [(0, 7), (1, 200), (2, 5000)]:
        y, p = classification(n, seed, ties=True)  # many scores exactly on a bin edge
        expected = calibration_error_reference(y, p)
        assert score("calibration_error", y, p) == pytest.approx(expected, abs=1e-12)
    # A calibrated model scores near 0; one that says 0.9 for a coin flip, 0.4.
    y, p = classification(200_000, 3)
    assert score("calibration_error", y, p) < 0.01
    assert score("calibration_error", y[:1000], np.full(1000, 0.9)) == pytest.approx(
        0.9 - y[:1000].mean()
    )


def test_mape_of_a_zero_target_is_huge_but_finite_like_scikit_learn() -> None:
    y = np.array([0.0, 2.0, -4.0])
    p = np.array([1.0, 1.0, -2.0])
    assert score("mape", y, p) == pytest.approx(sklearn_score("mape", y, p), rel=1e-12)
    assert math.isfinite(score("mape", y, p) or math.inf)


def test_every_task_metric_is_a_metric_of_that_kind() -> None:
    from modelloop.stats import TASK_METRICS

    assert set(TASK_METRICS["classification"]) <= set(CLASSIFICATION)
    assert set(TASK_METRICS["regression"]) == set(REGRESSION)


def test_r2_of_a_constant_target_is_finite_like_scikit_learn() -> None:
    y = np.full(5, 3.0)
    assert score("r2", y, y) == sklearn_score("r2", y, y) == 1.0
    assert score("r2", y, y + 1) == sklearn_score("r2", y, y + 1) == 0.0


def test_ranking_metrics_on_one_class_are_undefined() -> None:
    y = np.zeros(10)
    p = np.linspace(0, 1, 10)
    for metric in ("roc_auc", "average_precision", "log_loss"):
        assert score(metric, y, p) is None
    # Defined on one class, as in scikit-learn.
    for metric in ("brier", "accuracy", "f1"):
        assert score(metric, y, p) == pytest.approx(sklearn_score(metric, y, p))


def test_no_rows_is_no_score() -> None:
    assert score("roc_auc", [], []) is None
    assert score("rmse", [], []) is None


def test_a_missing_prediction_is_named_not_scored() -> None:
    with pytest.raises(DataError, match=r"roc_auc: 1 of the predictions are missing"):
        score("roc_auc", [0, 1, 1], [0.2, float("nan"), 0.7])


def test_an_unknown_metric_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown metric 'auc'.*roc_auc"):
        score("auc", [0, 1], [0.1, 0.9])


def test_the_monitoring_path_does_not_import_scikit_learn() -> None:
    import subprocess
    import sys

    code = (
        "import sys, modelloop.monitoring.pipeline, modelloop.stats as s;"
        "s.score('roc_auc', [0, 1, 1], [0.1, 0.8, 0.4]);"
        "print(sorted(m for m in ('sklearn', 'mlflow', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    # The statistics themselves do not even need pandas: a caller that has no frame pays nothing.
    code = "import sys, modelloop.stats; print('pandas' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def sql_score(metric: str, y: np.ndarray, p: np.ndarray) -> float | None:
    import duckdb
    import pandas as pd

    from modelloop.stats.metrics import read_scores, scores_sql

    connection = duckdb.connect()
    try:
        connection.register("labelled", pd.DataFrame({"y": np.asarray(y, float), "p": np.asarray(p, float)}))
        [(_n, found)] = read_scores([metric], connection.execute(scores_sql([metric], "labelled")).fetchall())
        return found[metric]
    finally:
        connection.close()


@pytest.mark.parametrize("metric", [*CLASSIFICATION, *REGRESSION])
def test_the_sql_form_of_each_metric_gives_the_same_number(metric: str) -> None:
    cases = [classification(n, seed, ties=ties) for seed, n in [(4, 9), (5, 3000)] for ties in (False, True)]
    rng = np.random.default_rng(6)
    y = rng.normal(10, 30, 2000).round(0)
    cases.append((y, y + rng.normal(0, 12, 2000)))
    for y, p in cases:
        expected = score(metric, y, p)
        assert expected is not None
        assert sql_score(metric, y, p) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_the_sql_form_keeps_the_rules_of_score() -> None:
    assert sql_score("roc_auc", np.zeros(0), np.zeros(0)) is None
    assert sql_score("roc_auc", np.zeros(5), np.linspace(0, 1, 5)) is None
    assert sql_score("brier", np.zeros(5), np.linspace(0, 1, 5)) == pytest.approx(
        score("brier", np.zeros(5), np.linspace(0, 1, 5))
    )
    y = np.full(4, 2.0)
    assert sql_score("r2", y, y) == 1.0 and sql_score("r2", y, y + 1) == 0.0
    with pytest.raises(DataError, match="1 of the predictions are missing"):
        sql_score("roc_auc", np.array([0.0, 1.0, 1.0]), np.array([0.2, np.nan, 0.7]))


def run_sql(sql: str, frame: object, *, fetch_all: bool = False) -> object:
    import duckdb

    connection = duckdb.connect()
    try:
        connection.register("labelled", frame)
        cursor = connection.execute(sql)
        return cursor.fetchall() if fetch_all else cursor.fetchone()
    finally:
        connection.close()


def test_several_metrics_in_one_statement_equal_score() -> None:
    import pandas as pd

    from modelloop.stats.metrics import read_scores, scores_sql

    y, p = classification(3000, 7, ties=True)
    metrics = [*CLASSIFICATION, "rmse", "mae"]
    frame = pd.DataFrame({"y": y.astype(float), "p": p})
    rows = run_sql(scores_sql(metrics, "labelled"), frame, fetch_all=True)
    [(n, found)] = read_scores(metrics, rows)
    assert n == 3000
    assert list(found) == metrics
    for metric in metrics:
        assert found[metric] == pytest.approx(score(metric, y, p), rel=1e-9, abs=1e-12), metric


def test_scores_per_group_equal_score_on_each_group() -> None:
    import pandas as pd

    from modelloop.stats.metrics import read_scores, scores_sql

    y, p = classification(4000, 8, ties=True)
    rng = np.random.default_rng(9)
    group = rng.choice(np.array(["a", "b", "c"], dtype=object), y.size)
    group[:40] = None  # rows without a segment are a group of their own
    y[group == "c"] = 1  # one class only: roc_auc undefined there, brier not
    frame = pd.DataFrame({"y": y.astype(float), "p": p, "seg": group})
    metrics = ["roc_auc", "log_loss", "brier", "calibration_error", "f1"]
    rows = run_sql(scores_sql(metrics, "labelled", group="seg"), frame, fetch_all=True)
    found = {g: (n, values) for g, n, values in read_scores(metrics, rows, grouped=True)}
    assert set(found) == {"a", "b", "c", None}
    for g, (n, values) in found.items():
        mask = np.array([v == g for v in group]) if g is not None else np.array([v is None for v in group])
        assert n == mask.sum()
        for metric in metrics:
            expected = score(metric, y[mask], p[mask])
            if expected is None:
                assert values[metric] is None, (g, metric)
            else:
                assert values[metric] == pytest.approx(expected, rel=1e-9, abs=1e-12), (g, metric)
    assert found["c"][1]["roc_auc"] is None and found["c"][1]["brier"] is not None


def test_scores_without_rows_are_none_and_missing_values_are_named() -> None:
    import pandas as pd

    from modelloop.stats.metrics import read_scores, scores_sql

    empty = pd.DataFrame({"y": np.zeros(0), "p": np.zeros(0)})
    rows = run_sql(scores_sql(["roc_auc", "rmse"], "labelled"), empty, fetch_all=True)
    assert read_scores(["roc_auc", "rmse"], rows) == [(0, {"roc_auc": None, "rmse": None})]
    bad = pd.DataFrame({"y": [0.0, 1.0, 1.0], "p": [0.2, np.nan, 0.7]})
    rows = run_sql(scores_sql(["roc_auc"], "labelled"), bad, fetch_all=True)
    with pytest.raises(DataError, match="1 of the predictions are missing"):
        read_scores(["roc_auc"], rows)
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        scores_sql(["roc_auc", "auc"], "labelled")


def calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 3, n)
    return (rng.uniform(0, 1, n) < p).astype("int64"), p


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "f1"])
def test_cbpe_estimates_the_realized_metric_of_calibrated_probabilities(metric: str) -> None:
    from modelloop.stats.metrics import estimate

    y, p = calibrated(200_000, 11)
    realized = score(metric, y, p)
    assert realized is not None
    assert estimate(metric, p) == pytest.approx(realized, abs=0.01)
    # An overconfident model (probabilities pushed to the ends) is estimated too high: the
    # estimate assumes calibration, and the test shows it depends on it.
    pushed = np.clip(p * 1.6 - 0.3, 0, 1)
    assert (estimate(metric, pushed) or 0) > (score(metric, y, pushed) or 0)


def test_cbpe_roc_auc_is_the_auc_of_each_row_as_weighted_positive_and_negative() -> None:
    from modelloop.stats.metrics import estimate

    _, p = calibrated(500, 12)
    p = np.round(p, 2)  # ties count half
    doubled = np.r_[p, p]
    truth = np.r_[np.ones(p.size), np.zeros(p.size)]
    weights = np.r_[p, 1 - p]
    expected = sk.roc_auc_score(truth, doubled, sample_weight=weights)
    assert estimate("roc_auc", p) == pytest.approx(expected, rel=1e-12)


def test_cbpe_rules() -> None:
    from modelloop.stats.metrics import estimate

    assert estimate("accuracy", []) is None
    assert estimate("roc_auc", np.ones(5)) is None  # no expected negatives to rank against
    assert estimate("f1", np.zeros(5)) == 0.0
    with pytest.raises(ValueError, match=r"cannot estimate 'rmse'.*accuracy, f1, roc_auc"):
        estimate("rmse", [0.5])
    with pytest.raises(DataError, match="1 of the probabilities are missing or outside"):
        estimate("accuracy", [0.2, 1.5])


def test_cbpe_in_sql_equals_numpy() -> None:
    import pandas as pd

    from modelloop.stats.metrics import ESTIMABLE, estimate, estimate_sql, read_estimates

    metrics = sorted(ESTIMABLE)
    for p in (calibrated(200_000, 13)[1], np.round(calibrated(3000, 14)[1], 1), np.ones(4)):
        row = run_sql(estimate_sql(metrics, "labelled"), pd.DataFrame({"p": p}))
        found = read_estimates(metrics, row)  # type: ignore[arg-type]
        for metric in metrics:
            expected = estimate(metric, p)
            if expected is None:
                assert found[metric] is None
            else:
                assert found[metric] == pytest.approx(expected, rel=1e-9, abs=1e-12), metric
    row = run_sql(estimate_sql(metrics, "labelled"), pd.DataFrame({"p": np.zeros(0)}))
    assert read_estimates(metrics, row) == dict.fromkeys(metrics)  # type: ignore[arg-type]
    row = run_sql(estimate_sql(metrics, "labelled"), pd.DataFrame({"p": [0.3, np.nan]}))
    with pytest.raises(DataError, match="1 of the probabilities"):
        read_estimates(metrics, row)  # type: ignore[arg-type]
