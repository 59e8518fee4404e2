"""The windows chosen for each cadence: natural units, and a training that works at the latest
time (enough rows to fit, rows in the holdout), counted with the functions training uses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelloop.data import split_by_time, training_windows
from modelloop.data.windows import MIN_TRAIN_ROWS
from modelloop.errors import DataError
from modelloop.scaffold import Cadence
from modelloop.scaffold.windows import choose_windows


def _times(freq: str, periods: int, per_step: int = 1) -> pd.Series:
    stamps = pd.date_range("2001-01-01", periods=periods, freq=freq)
    return pd.Series(np.repeat(stamps.to_numpy(), per_step))


@pytest.mark.parametrize(
    ("freq", "periods", "per_step", "cadence", "expected"),
    [
        # (label delay, holdout, training window, monitoring window)
        ("h", 24 * 90, 1, Cadence.HOURLY, ("1h", "1w", "90d", "2d")),
        ("D", 3 * 365, 1, Cadence.DAILY, ("1d", "30d", "1y", "30d")),
        ("D", 60, 50, Cadence.DAILY, ("1d", "2w", "45d", "1w")),  # 50 rows a day, two months: all of it
        ("W-MON", 300, 1, Cadence.WEEKLY, ("1w", "1y", "4y", "13w")),
        ("MS", 144, 1, Cadence.MONTHLY, ("1mo", "2y", "10y", "1y")),
        ("QS", 80, 1, Cadence.QUARTERLY, ("3mo", "2y", "20y", "2y")),
        ("YS", 60, 1, Cadence.YEARLY, ("1y", "6y", "75y", "10y")),
    ],
)
def test_each_cadence(
    freq: str, periods: int, per_step: int, cadence: Cadence, expected: tuple[str, ...]
) -> None:
    times = _times(freq, periods, per_step)
    w = choose_windows(times, "t.csv")
    assert w.cadence is cadence
    assert tuple(map(str, (w.label_delay, w.holdout, w.training, w.monitoring))) == expected
    assert w.cooldown == w.holdout
    assert 1 <= w.min_labelled_rows <= 100
    # what `modelloop train` does at the latest time, with these durations
    frame = pd.DataFrame({"t": times})
    windows = training_windows(
        times.max().to_pydatetime(), label_delay=w.label_delay, window=w.training, holdout=w.holdout
    )
    train, holdout = split_by_time(frame, "t", windows)
    assert (len(train), len(holdout)) == (w.train_rows, w.holdout_rows)
    assert len(train) >= MIN_TRAIN_ROWS
    assert len(holdout) >= 1
    assert len(holdout) <= 0.25 * (len(train) + len(holdout)) + 1  # the holdout never starves training


def test_a_short_table_trains_on_all_of_it() -> None:
    w = choose_windows(_times("D", 40), "t.csv")
    assert w.covers_all and w.train_rows >= MIN_TRAIN_ROWS and w.holdout_rows >= 1


def test_a_huge_table_trains_on_a_shorter_window() -> None:
    times = _times("min", 2 * 365 * 24 * 60)  # two years, one row a minute
    w = choose_windows(times, "t.csv")
    assert 200 <= w.train_rows <= 500_000
    assert str(w.label_delay) == "1h"


def test_too_few_rows() -> None:
    with pytest.raises(DataError, match="only 11 row"):
        choose_windows(_times("D", 12), "t.csv")


def test_rows_still_waiting_for_labels_stretch_the_label_delay() -> None:
    times = _times("D", 400)
    labelled = pd.Series(np.arange(400) < 379)  # the newest 21 days have no label yet
    w = choose_windows(times, "t.csv", labelled=labelled)
    assert str(w.label_delay) == "3w"
    assert w.last == times.max().to_pydatetime()  # training still runs at the latest row's time
    assert w.holdout_rows >= 14 and w.train_rows >= MIN_TRAIN_ROWS
