"""What `propose` infers from real tables: the task, the time column, the features, the columns
left out and why, leaks, calendar features and the windows, as a user reads them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modelloop.config import ProjectConfig, parse_config
from modelloop.data import split_by_time, training_windows
from modelloop.data.windows import MIN_TRAIN_ROWS
from modelloop.scaffold import Cadence, Exclusion, Proposal, propose, render
from tests.scaffold.conftest import air_passengers, hotel_with_extras, write


def _reasons(proposal: Proposal) -> dict[str, Exclusion]:
    return {c.column: c.reason for c in proposal.left_out}


def _prose(text: str) -> str:
    """The project file with wrapped comments joined back into one line each."""
    return re.sub(r"\s*\n\s*#\s+(?!\s)", " ", text)


def _parsed(proposal: Proposal) -> ProjectConfig:
    return parse_config(yaml.safe_load(render(proposal)))


def test_monthly_regression_series(air_csv: Path, tmp_path: Path) -> None:
    proposal = propose(air_csv, target="passengers", project_dir=tmp_path)
    assert proposal.task == "regression"
    assert proposal.target.inferred
    assert proposal.time.name == "date" and proposal.time.inferred
    assert proposal.features.numeric == ["month"]
    assert proposal.id is None  # modelloop derives row_id
    assert _reasons(proposal) == {"rownames": Exclusion.ROW_NUMBER}
    assert [c.column for c in proposal.seasonal] == ["month"]
    assert proposal.metric == "rmse" and proposal.estimator.endswith("HistGradientBoostingRegressor")
    assert proposal.params["min_samples_leaf"] == 5  # 144 rows: a small table
    w = proposal.windows
    assert w.cadence is Cadence.MONTHLY
    assert (str(w.label_delay), str(w.holdout), str(w.training)) == ("1mo", "2y", "10y")
    assert (w.holdout_rows, w.train_rows) == (24, 119)  # every labelled month is used
    config = _parsed(proposal)
    assert config.name == "AirPassengers"
    assert config.data.source == "AirPassengers.csv"
    assert config.monitoring.seasonal == ["month"]
    assert config.evaluation.metric == "rmse" and not config.maximize


def test_monthly_table_with_a_leak(seatbelts_csv: Path, tmp_path: Path) -> None:
    proposal = propose(seatbelts_csv, target="DriversKilled", project_dir=tmp_path)
    assert proposal.task == "regression"
    assert proposal.time.name == "period"  # "1969-01" text is a date
    assert [leak.column for leak in proposal.leaks] == ["killed_nearest_ten"]
    assert proposal.leaks[0].statistic == "correlation" and proposal.leaks[0].value >= 0.98
    assert _reasons(proposal) == {"killed_nearest_ten": Exclusion.LEAK}
    # drivers correlates 0.89 with drivers killed: a strong feature, not a leak
    assert "drivers" in proposal.features.numeric
    assert [c.column for c in proposal.seasonal] == ["month"]
    text = _prose(render(proposal))
    assert "killed_nearest_ten: looks like it leaks the target (correlation 0.99" in text
    assert "add it back if it is known before the prediction" in text
    assert _parsed(proposal).data.source == "data/seatbelts.csv.gz"


def test_daily_classification_with_columns_to_leave_out(hotel_parquet: Path, tmp_path: Path) -> None:
    proposal = propose(hotel_parquet, target="is_repeated_guest", project_dir=tmp_path)
    assert proposal.task == "classification" and proposal.target.positive is None
    assert proposal.time.name == "arrival_date"
    assert _reasons(proposal) == {
        "rownames": Exclusion.ROW_NUMBER,
        "booking_ref": Exclusion.NEAR_UNIQUE,
        "hotel": Exclusion.CONSTANT,
        "notes": Exclusion.MISSING,
        "booked_on": Exclusion.DATETIME,
        "loyalty_tier": Exclusion.LEAK,
    }
    assert proposal.leaks[0].statistic == "determines"
    features = proposal.features
    assert {"meal", "country", "market_segment", "agent"} <= set(features.categorical)
    assert {"lead_time", "adults", "historical_adr"} <= set(features.numeric)  # adults has gaps
    assert {c.column: c.kind for c in proposal.seasonal} == {
        "arrival_month": "month",
        "weekday": "day of week",
    }
    w = proposal.windows
    assert w.cadence is Cadence.DAILY
    assert (str(w.label_delay), str(w.holdout), str(w.training)) == ("1d", "2w", "1y")
    assert w.holdout_rows >= 30 and w.train_rows >= 10 * MIN_TRAIN_ROWS
    config = _parsed(proposal)
    assert config.name == "hotel-rates"
    assert config.data.source == "data/hotel rates.parquet"
    assert config.evaluation.metric == "roc_auc"
    assert config.data.id is None and config.data.derived_id


def test_text_classes_need_positive_and_keep_both(tmp_path: Path) -> None:
    frame = hotel_with_extras().drop(columns=["loyalty_tier"])
    frame["guest"] = frame.pop("is_repeated_guest").map({1: "returning", 0: "first visit"})
    path = write(frame, tmp_path / "guests.csv")
    proposal = propose(path, target="guest", positive="Returning", project_dir=tmp_path)
    assert (proposal.target.positive, proposal.target.negative) == ("returning", "first visit")
    config = _parsed(proposal)
    assert (config.data.positive, config.data.negative) == ("returning", "first visit")


def test_yes_no_classes_need_no_positive(tmp_path: Path) -> None:
    frame = hotel_with_extras().drop(columns=["loyalty_tier"])
    frame["repeat"] = frame.pop("is_repeated_guest").map({1: "Yes", 0: "No"})
    proposal = propose(write(frame, tmp_path / "t.parquet"), target="repeat", project_dir=tmp_path)
    assert proposal.task == "classification"
    assert proposal.target.positive is None
    assert _parsed(proposal).data.positive is None


def test_numeric_classes_take_a_positive_in_their_own_type(tmp_path: Path) -> None:
    frame = hotel_with_extras().drop(columns=["loyalty_tier"])
    frame["code"] = frame.pop("is_repeated_guest") + 1  # 1 and 2
    path = write(frame, tmp_path / "t.csv")
    proposal = propose(path, target="code", positive="2", project_dir=tmp_path)
    assert (proposal.target.positive, proposal.target.negative) == (2, 1)
    assert _parsed(proposal).data.positive == 2


def test_task_option_overrides_the_guess(air_csv: Path, tmp_path: Path) -> None:
    frame = air_passengers()
    frame["busy"] = (frame["passengers"] > 250).astype(int)
    path = write(frame, tmp_path / "busy.csv")
    guessed = propose(path, target="busy", project_dir=tmp_path)
    forced = propose(path, target="busy", task="regression", project_dir=tmp_path)
    assert (guessed.task, forced.task) == ("classification", "regression")
    assert not forced.target.inferred
    assert "passengers" in [leak.column for leak in guessed.leaks]  # it defines busy
    assert _parsed(forced).evaluation.metric == "rmse"


def test_options_name_the_time_and_id_columns(tmp_path: Path) -> None:
    frame = air_passengers()
    frame["recorded"] = frame["date"]  # two date columns: --time picks the second
    path = write(frame, tmp_path / "air.csv")
    proposal = propose(
        path, target="passengers", time="recorded", id="rownames", name="air.v2", project_dir=tmp_path
    )
    assert proposal.time.name == "recorded" and not proposal.time.inferred
    assert proposal.id == "rownames"
    assert _reasons(proposal) == {"date": Exclusion.DATETIME}
    config = _parsed(proposal)
    assert (config.name, config.data.id, config.data.timestamp) == ("air.v2", "rownames", "recorded")


def test_integer_counts_are_not_taken_for_times(tmp_path: Path) -> None:
    frame = air_passengers()
    frame["flights_flown"] = frame["passengers"] * 10 + 1_356_998_400  # epoch-sized numbers
    path = write(frame[["flights_flown", "rownames", "date", "month", "passengers"]], tmp_path / "a.csv")
    proposal = propose(path, target="passengers", project_dir=tmp_path)
    assert proposal.time.name == "date"


def test_the_windows_train_at_the_latest_time(hotel_parquet: Path, tmp_path: Path) -> None:
    """The proposed durations, put through the windows training uses, leave enough rows."""
    proposal = propose(hotel_parquet, target="is_repeated_guest", project_dir=tmp_path)
    frame = pd.read_parquet(hotel_parquet).assign(
        arrival_date=lambda f: pd.to_datetime(f["arrival_date"])
    )
    w = proposal.windows
    windows = training_windows(
        frame["arrival_date"].max().to_pydatetime(),
        label_delay=w.label_delay,
        window=w.training,
        holdout=w.holdout,
    )
    train, holdout = split_by_time(frame, "arrival_date", windows)
    assert (len(train), len(holdout)) == (w.train_rows, w.holdout_rows)
    assert len(train) >= MIN_TRAIN_ROWS and len(holdout) > 0


def test_summary_for_json_and_people(hotel_parquet: Path, tmp_path: Path) -> None:
    proposal = propose(hotel_parquet, target="is_repeated_guest", project_dir=tmp_path)
    summary = proposal.to_dict()
    assert summary["task"] == "classification" and summary["timestamp"] == "arrival_date"
    assert summary["derived_id"] is True
    assert {"column": "loyalty_tier", "statistic": "determines", "value": 1.0} in summary["leaks"]
    assert summary["seasonal"] == ["arrival_month", "weekday"]
    assert summary["windows"]["holdout"] == "2w"
    assert any(c["column"] == "notes" and c["reason"] == "missing" for c in summary["left_out"])
    lines = proposal.lines()
    assert lines[0].startswith("task: classification")
    assert any("left out 'loyalty_tier': looks like it leaks the target" in line for line in lines)


def test_a_big_table_is_read_in_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelloop.scaffold.table as table

    monkeypatch.setattr(table, "MAX_ROWS", 3000)
    frame = hotel_with_extras()
    path = write(frame, tmp_path / "hotel.parquet")
    proposal = propose(path, target="is_repeated_guest", project_dir=tmp_path)
    assert proposal.truncated and proposal.table_rows == 3000
    assert any("first 3,000 of" in note and f"{len(frame):,}" in note for note in proposal.notes)
    assert "the proposal looked at the first 3,000" in _prose(render(proposal))


def test_every_table_name_init_reads_the_data_source_reads_too(tmp_path: Path) -> None:
    from modelloop.data import open_source

    path = write(air_passengers(), tmp_path / "air.PQ")
    proposal = propose(path, target="passengers", project_dir=tmp_path)
    assert proposal.source == "air.PQ" and not proposal.notes
    source = open_source(proposal.source, tmp_path, proposal.time.name)
    assert source.latest_timestamp() == proposal.windows.last


def test_the_public_api_is_sorted() -> None:
    import modelloop.scaffold as scaffold

    assert scaffold.__all__ == sorted(scaffold.__all__)
    assert all(getattr(scaffold, name) is not None for name in scaffold.__all__)


def test_rows_that_would_share_a_derived_id_are_pointed_out(tmp_path: Path) -> None:
    frame = air_passengers().drop(columns=["rownames"])
    twice = pd.concat([frame, frame.head(3)], ignore_index=True)  # three rows exported twice
    proposal = propose(write(twice, tmp_path / "air.csv"), target="passengers",
                       project_dir=tmp_path)
    assert proposal.id is None
    assert any(n.startswith("3 row(s) repeat another row's time and feature values")
               for n in proposal.notes)
    clean = propose(write(frame, tmp_path / "clean.csv"), target="passengers",
                    project_dir=tmp_path)
    assert not any("repeat another row" in n for n in clean.notes)
