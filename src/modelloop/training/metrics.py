"""The primary metric, computed the same way in training, gating and monitoring."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def score(metric: str, y_true: Any, y_score: Any) -> float | None:
    """The metric on (labels, predictions); None when it is undefined (e.g. one class only)."""
    from sklearn import metrics as m

    truth = np.asarray(y_true, dtype="float64")
    pred = np.asarray(y_score, dtype="float64")
    if truth.size == 0:
        return None
    if metric in ("roc_auc", "average_precision", "log_loss") and np.unique(truth).size < 2:
        return None
    if metric == "roc_auc":
        value = m.roc_auc_score(truth, pred)
    elif metric == "average_precision":
        value = m.average_precision_score(truth, pred)
    elif metric == "log_loss":
        value = m.log_loss(truth, np.clip(pred, 1e-15, 1 - 1e-15), labels=[0, 1])
    elif metric == "brier":
        value = m.brier_score_loss(truth, pred)
    elif metric == "accuracy":
        value = m.accuracy_score(truth, pred >= 0.5)
    elif metric == "f1":
        value = m.f1_score(truth, pred >= 0.5, zero_division=0)
    elif metric == "rmse":
        value = math.sqrt(m.mean_squared_error(truth, pred))
    elif metric == "mae":
        value = m.mean_absolute_error(truth, pred)
    elif metric == "r2":
        value = m.r2_score(truth, pred)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    return float(value)
