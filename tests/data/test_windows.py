"""Time windows: at as-of T a model only sees labels up to T - label delay, and its holdout is
later than everything it was fitted on."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from modelloop.data import TrainingWindows, fingerprint, split_by_time, training_windows
from modelloop.timeutil import parse_duration

AS_OF = datetime(2024, 3, 1)


def windows(label_delay: str = "1d", window: str = "30d", holdout: str = "10d",
            as_of: datetime = AS_OF) -> TrainingWindows:
    return training_windows(as_of, label_delay=parse_duration(label_delay),
                            window=parse_duration(window), holdout=parse_duration(holdout))


def test_labels_are_used_only_up_to_as_of_minus_the_label_delay() -> None:
    w = windows(label_delay="2d")
    assert w.labelled_until == datetime(2024, 2, 28)
    assert w.holdout_end == w.labelled_until


def test_the_holdout_is_the_newest_labelled_rows_and_training_comes_before() -> None:
    w = windows()
    assert w.train_end == datetime(2024, 2, 19)  # 2024-02-29 minus 10 days
    assert w.holdout_start == w.train_end
    assert w.train_start == datetime(2024, 1, 20)  # 30 days before the holdout
    assert w.train_start < w.train_end < w.holdout_end < w.as_of


def test_months_and_years_step_back_on_the_calendar() -> None:
    w = windows(label_delay="1d", holdout="1mo", window="1y", as_of=datetime(2024, 4, 1))
    assert w.labelled_until == datetime(2024, 3, 31)
    assert w.train_end == datetime(2024, 2, 29)  # a month before Mar 31, in a leap year
    assert w.train_start == datetime(2023, 2, 28)  # a year before Feb 29


def test_windows_serialise_as_iso_times() -> None:
    assert windows().to_dict() == {
        "as_of": "2024-03-01T00:00:00", "labelled_until": "2024-02-29T00:00:00",
        "train_start": "2024-01-20T00:00:00", "train_end": "2024-02-19T00:00:00",
        "holdout_start": "2024-02-19T00:00:00", "holdout_end": "2024-02-29T00:00:00",
    }


def test_split_puts_each_row_in_at_most_one_window_with_right_closed_bounds() -> None:
    w = windows()
    stamps = [w.train_start, w.train_start + timedelta(seconds=1), w.train_end,
              w.train_end + timedelta(seconds=1), w.holdout_end,
              w.holdout_end + timedelta(seconds=1), AS_OF]
    frame = pd.DataFrame({"t": stamps, "row": range(len(stamps))})
    train, holdout = split_by_time(frame, "t", w)
    assert train["row"].tolist() == [1, 2]  # (train_start, train_end]
    assert holdout["row"].tolist() == [3, 4]  # (train_end, labelled_until]
    # Rows newer than the labels available at as-of are in neither window.


def test_every_holdout_row_is_later_than_every_training_row(flights: pd.DataFrame) -> None:
    train, holdout = split_by_time(flights, "sched_dep", windows())
    assert len(train) > 1000 and len(holdout) > 300
    assert train["sched_dep"].max() < holdout["sched_dep"].min()
    assert holdout["sched_dep"].max() <= pd.Timestamp("2024-02-29")
    assert train.index.tolist() == list(range(len(train)))  # fresh index, ready to fit


def test_fingerprint_recognises_the_same_data_and_notices_any_change(
        flights: pd.DataFrame) -> None:
    same = fingerprint(flights.copy())
    assert fingerprint(flights) == same
    changed = flights.copy()
    changed.loc[100, "distance"] += 1
    assert fingerprint(changed) != same
    renamed = flights.rename(columns={"temp": "temperature"})
    assert fingerprint(renamed) != same
    assert fingerprint(flights.iloc[::-1]) != same  # order-sensitive, as documented
