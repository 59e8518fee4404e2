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
    raise AssertionError(metric)


CLASSIFICATION = ["roc_auc", "average_precision", "log_loss", "brier", "accuracy", "f1"]
REGRESSION = ["rmse", "mae", "r2"]


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

    from modelloop.stats.metrics import score_from_row, score_sql

    connection = duckdb.connect()
    try:
        connection.register("labelled", pd.DataFrame({"y": np.asarray(y, float), "p": np.asarray(p, float)}))
        return score_from_row(metric, connection.execute(score_sql(metric, "labelled")).fetchone())
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
