"""Time-based windows and data fingerprints.

Training at as-of T only sees labels that existed at T: rows with timestamp <= T - label delay.
The newest `holdout` of those is kept out of fitting and used to evaluate and gate, so the
holdout is always later than the training window of the candidate and of any older champion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from modelloop.timeutil import Duration

#: Training refuses a window with fewer labelled rows than this; `init --from` sizes windows by it.
MIN_TRAIN_ROWS = 20


@dataclass(frozen=True)
class TrainingWindows:
    as_of: datetime
    labelled_until: datetime
    train_start: datetime
    train_end: datetime
    holdout_end: datetime

    @property
    def holdout_start(self) -> datetime:
        return self.train_end

    def to_dict(self) -> dict[str, str]:
        return {
            "as_of": self.as_of.isoformat(),
            "labelled_until": self.labelled_until.isoformat(),
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "holdout_start": self.holdout_start.isoformat(),
            "holdout_end": self.holdout_end.isoformat(),
        }


def training_windows(
    as_of: datetime, *, label_delay: Duration, window: Duration, holdout: Duration
) -> TrainingWindows:
    """The windows at `as_of`, stepped back on the calendar (so '6mo' before Aug 31 is Feb 28/29)."""
    labelled_until = as_of - label_delay
    train_end = labelled_until - holdout
    return TrainingWindows(
        as_of=as_of,
        labelled_until=labelled_until,
        train_start=train_end - window,
        train_end=train_end,
        holdout_end=labelled_until,
    )


def refit_windows(tags: Mapping[str, str]) -> TrainingWindows:
    """A gated version's training window stretched over its holdout, with no holdout left: what
    its refit trains on (`training.refit`)."""
    holdout_end = datetime.fromisoformat(tags["modelloop.window.holdout_end"])
    return TrainingWindows(
        as_of=datetime.fromisoformat(tags["modelloop.as_of"]),
        labelled_until=holdout_end,
        train_start=datetime.fromisoformat(tags["modelloop.window.train_start"]),
        train_end=holdout_end,
        holdout_end=holdout_end,
    )


def split_by_time(
    frame: pd.DataFrame, timestamp: str, windows: TrainingWindows
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): train in (train_start, train_end], holdout in (train_end, holdout_end]."""
    ts = frame[timestamp]
    train = frame[
        (ts > pd.Timestamp(windows.train_start)) & (ts <= pd.Timestamp(windows.train_end))
    ]
    holdout = frame[
        (ts > pd.Timestamp(windows.train_end)) & (ts <= pd.Timestamp(windows.holdout_end))
    ]
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of the rows and columns (order-sensitive), so a run's data can be recognised."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
