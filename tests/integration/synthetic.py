"""A small generated dataset with drift injected on purpose, for the whole-loop test.

Days 0-59: `x1` drives the target. From day 60 the world changes: `x1` and `x2` shift, a new
segment appears, and the target follows `x2` instead. A model fitted before day 60 degrades
on the new data; one retrained on it recovers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

START = datetime(2024, 1, 1)
DRIFT_DAY = 60
ROWS_PER_DAY = 160


def day(n: int) -> datetime:
    return START + timedelta(days=n)


def rows_between(frame: pd.DataFrame, first: int, last: int) -> pd.DataFrame:
    """The rows of `frame` from day `first` to day `last`, both included."""
    stamps = frame["event_time"]
    return frame[(stamps >= pd.Timestamp(day(first))) & (stamps < pd.Timestamp(day(last + 1)))]


def split_body(rows: pd.DataFrame) -> bytes:
    """`rows` as a `/invocations` body in MLflow's `dataframe_split` format."""
    body = rows.to_json(orient="split", date_format="iso", index=False)
    return b'{"dataframe_split": ' + body.encode() + b"}"


def make_frame(days: int = 100, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for d in range(days):
        n = ROWS_PER_DAY
        drifted = d >= DRIFT_DAY
        stamp = [day(d) + timedelta(minutes=int(m)) for m in np.sort(rng.integers(1, 1439, n))]
        x1 = rng.normal(1.5 if drifted else 0.0, 1.0, n)
        x2 = rng.normal(2.0 if drifted else 0.0, 1.0, n)
        segs = ["a", "b", "c", "d"] if drifted else ["a", "b", "c"]
        seg = rng.choice(segs, n)
        logit = (3.0 * (x2 - 2.0) - 0.5 * x1) if drifted else (2.5 * x1 + 0.8 * (seg == "a"))
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
        x3 = np.where(rng.random(n) < 0.05, np.nan, rng.normal(0, 1, n))  # nullable from the start
        parts.append(
            pd.DataFrame(
                {"event_time": stamp, "x1": x1, "x2": x2, "x3": x3, "seg": seg, "label": y}
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "row_id", [f"r{i:06d}" for i in range(len(frame))])
    return frame


PROJECT = """\
name: synthetic-loop
task: classification
data:
  source: data.parquet
  timestamp: event_time
  target: label
  id: row_id
  features:
    numeric: [x1, x2, x3]
    categorical: [seg]
model:
  estimator: {estimator}
  params: {params}
training:
  window: 10d
evaluation:
  metric: roc_auc
  holdout: 5d
gate:
  floor: 0.6
  tolerance: 0.01
monitoring:
  window: 7d
  label_delay: 1d
  drift_threshold: 0.2
  drift_share: 0.3
  performance_floor: 0.75
  min_labelled_rows: 200
retraining:
  cooldown: 14d
"""


def write_project(
    directory: Path,
    *,
    estimator: str = "sklearn.ensemble.HistGradientBoostingClassifier",
    params: str = "{max_iter: 60, random_state: 0}",
    name: str = "modelloop.yaml",
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(PROJECT.format(estimator=estimator, params=params), encoding="utf-8")
    return path
