"""Spot features that give the target away.

A column computed from the outcome (an arrival delay beside "arrived late", a total beside its
share) makes a model that scores beautifully offline and is useless when serving, because the
column does not exist yet when the prediction is asked for. Names are not trusted either way:
only the statistics decide, and the user gets the number to judge by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: |Pearson| or |Spearman| correlation with the target at or above this is a leak.
CORRELATION = 0.98
#: A numeric feature that ranks the two classes this well (ROC AUC, either way round) is a leak.
SEPARATION = 0.995
#: A category that fixes the target for this share of rows (of each class) is a leak.
DETERMINED = 0.99
#: Fewer rows than this prove nothing.
_MIN_ROWS = 20
#: Statistics on more rows than this use a sample: the answer does not change, the time does.
_SAMPLE = 200_000


@dataclass(frozen=True)
class Leak:
    """Why a column looks like it leaks: the statistic, its value, and words for the comment."""

    column: str
    statistic: str  # "correlation" | "separation" | "determines"
    value: float

    def describe(self) -> str:
        if self.statistic == "correlation":
            what = f"correlation {self.value:.3f}"
        elif self.statistic == "separation":
            what = f"it alone separates the classes, ROC AUC {self.value:.3f}"
        else:
            what = f"each of its values fixes the target for {self.value:.1%} of rows"
        return (
            f"looks like it leaks the target ({what}): add it back if it is known before the "
            "prediction"
        )


def numeric_leak(feature: pd.Series, target: pd.Series, classification: bool) -> Leak | None:
    """A leak by correlation (Pearson or Spearman), or for two classes by separation."""
    pair = _pairs(feature, target)
    if pair is None:
        return None
    x, y = pair
    pearson = abs(float(np.corrcoef(x, y)[0, 1]))
    spearman = abs(float(np.corrcoef(_ranks(x), _ranks(y))[0, 1]))
    strongest = max(np.nan_to_num(pearson), np.nan_to_num(spearman))
    if strongest >= CORRELATION:
        return Leak(str(feature.name), "correlation", strongest)
    if classification:
        auc = _auc(x, y)
        if max(auc, 1 - auc) >= SEPARATION:
            return Leak(str(feature.name), "separation", max(auc, 1 - auc))
    return None


def categorical_leak(feature: pd.Series, target: pd.Series, classification: bool) -> Leak | None:
    """A leak when each category's rows (of every class) share one target value.

    A category seen once proves nothing, and a rare class could land in pure categories by
    chance, so only categories with two or more rows count, and for two classes each class must
    be determined on its own.
    """
    rows = pd.DataFrame({"x": feature.astype(object), "y": target}).dropna(subset=["y"])
    if len(rows) < _MIN_ROWS or rows["x"].nunique(dropna=False) >= len(rows) / 2:
        return None
    groups = rows.groupby("x", dropna=False)["y"]
    pure = (groups.transform("nunique") == 1) & (groups.transform("size") >= 2)
    if classification:
        shares = [float(pure[rows["y"] == value].mean()) for value in rows["y"].unique()]
        share = min(shares)
    else:
        share = float(pure.mean())
    if share >= DETERMINED:
        return Leak(str(feature.name), "determines", share)
    return None


def _pairs(feature: pd.Series, target: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows where both are present, as float arrays; None when too few or one side is constant."""
    both = pd.DataFrame({"x": feature, "y": target}).dropna()
    if len(both) > _SAMPLE:
        both = both.sample(_SAMPLE, random_state=0)
    if len(both) < _MIN_ROWS or both["x"].nunique() < 2 or both["y"].nunique() < 2:
        return None
    return both["x"].to_numpy(dtype=float), both["y"].to_numpy(dtype=float)


def _ranks(values: np.ndarray) -> np.ndarray:
    return pd.Series(values).rank(method="average").to_numpy()


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC of `score` for label 1 (Mann-Whitney U over average ranks)."""
    positive = label == label.max()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ranks = _ranks(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
