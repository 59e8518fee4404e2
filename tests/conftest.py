"""Shared fixtures: a small synthetic flights dataset and projects built on it.

The projects use the real in-process backends (`MemoryRegistry`, `MemoryLogStore`, a SQLite
`MetadataDB` under tmp_path) and a real `FileSource` over a Parquet file, so the code under test
runs end to end without MLflow. The integration tests under tests/integration have their own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.config import ProjectConfig, parse_config
from modelloop.data import FileSource
from modelloop.project import Project
from modelloop.registry import MemoryRegistry
from modelloop.store import MemoryLogStore, MetadataDB

#: The first day of the synthetic data; it spans DAYS days from here.
START = datetime(2024, 1, 1)
DAYS = 60
#: An as-of time just after the data ends: labels up to 2024-02-29 exist (label delay 1d).
AS_OF = datetime(2024, 3, 1)

RAW_CONFIG: dict[str, Any] = {
    "name": "flights",
    "task": "classification",
    "data": {
        "source": "flights.parquet",
        "timestamp": "sched_dep",
        "target": "delayed",
        "id": "flight_id",
        "features": {"numeric": ["hour", "distance", "temp"], "categorical": ["carrier"]},
    },
    # Fast and deterministic; the estimator tests cover HistGradientBoosting and others.
    "model": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": 1.0}},
    "training": {"window": "30d"},
    "evaluation": {"metric": "roc_auc", "holdout": "10d"},
    "gate": {"floor": 0.6, "tolerance": 0.0},
    "monitoring": {"label_delay": "1d"},
}


def build_flights(n_rows: int = 3000, days: int = DAYS, seed: int = 0) -> pd.DataFrame:
    """Flights spread over `days` days from START, sorted by time.

    `delayed` depends on the hour, the distance and the carrier, so a model can learn it
    (ROC AUC around 0.75). `temp` has about 5% nulls, so an inferred contract lets it be null;
    no other feature has nulls.
    """
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, days * 86400, n_rows)).round()
    sched_dep = pd.Timestamp(START) + pd.to_timedelta(seconds, unit="s")
    hour = rng.integers(5, 23, n_rows).astype("float64")
    distance = rng.uniform(100, 3000, n_rows).round(0)
    temp = rng.normal(5, 8, n_rows).round(1)
    temp[rng.random(n_rows) < 0.05] = np.nan
    carrier = rng.choice(["AA", "UA", "DL", "B6", "WN"], n_rows)
    logit = (-1.2 + 0.15 * (hour - 14) + 0.0006 * (distance - 1500)
             + np.select([carrier == "B6", carrier == "DL"], [1.4, -1.0], 0.0))
    delayed = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    return pd.DataFrame({
        "flight_id": [f"F{seed}-{i:05d}" for i in range(n_rows)],
        "sched_dep": sched_dep.astype("datetime64[ns]"),
        "hour": hour,
        "distance": distance,
        "temp": temp,
        "carrier": pd.Series(carrier, dtype=object),
        "delayed": delayed,
    })


@pytest.fixture(autouse=True)
def _mlflow_uris_stay_put() -> Iterator[None]:
    """MLflow's set_tracking_uri/set_registry_uri also write MLFLOW_TRACKING_URI and
    MLFLOW_REGISTRY_URI into os.environ; a test that opens a project in-process must not leave
    them for the subprocesses of later tests, which would then look in its registry."""
    import os

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {key: os.environ.get(key) for key in keys}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def _flights_once() -> pd.DataFrame:
    return build_flights()


@pytest.fixture
def flights(_flights_once: pd.DataFrame) -> pd.DataFrame:
    """3,000 labelled flights over 60 days (a fresh copy: mutate it freely)."""
    return _flights_once.copy()


@pytest.fixture
def make_flights() -> Callable[..., pd.DataFrame]:
    """`make_flights(n_rows=3000, days=60, seed=0)` for tests that need other data."""
    return build_flights


@pytest.fixture
def as_of() -> datetime:
    """Just after the synthetic data ends (2024-03-01): labels up to 2024-02-29 exist."""
    return AS_OF


@pytest.fixture
def raw_config() -> dict[str, Any]:
    """The project file as YAML would parse it (a fresh copy: mutate it freely)."""
    return copy.deepcopy(RAW_CONFIG)


@pytest.fixture
def config(raw_config: dict[str, Any]) -> ProjectConfig:
    return parse_config(raw_config, "modelloop.yaml")


@pytest.fixture
def write_source(tmp_path: Path) -> Callable[..., FileSource]:
    """`write_source(frame, name="flights.parquet")`: the frame as a Parquet (or, when the name
    ends in .csv, a CSV) file in tmp_path, as a FileSource."""

    def write(frame: pd.DataFrame, name: str = "flights.parquet") -> FileSource:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".csv"):
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return FileSource(name, tmp_path, "sched_dep")

    return write


def build_project(directory: Path, frame: pd.DataFrame,
                  config: ProjectConfig | None = None) -> Project:
    """A Project over `frame` with the in-memory registry and log store, and SQLite metadata."""
    config = config or parse_config(copy.deepcopy(RAW_CONFIG), "modelloop.yaml")
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(directory / "flights.parquet", index=False)
    data = config.data
    return Project(
        config,
        project_dir=directory,
        home=directory / ".modelloop",
        registry=MemoryRegistry(),
        db=MetadataDB(f"sqlite:///{directory / 'modelloop.db'}", model=config.name),
        logs=MemoryLogStore(config.name, id_column=data.id_column, timestamp_column=data.timestamp,
                            target_column=data.target),
        source=FileSource("flights.parquet", directory, data.timestamp),
    )


def serve_rows(project: Project, frame: pd.DataFrame, request_id: str) -> list[float]:
    """Score and log `frame` as the server does (validation, the champion, the prediction
    logger), in-process and without HTTP: for tests that need a prediction log."""
    import json

    from modelloop.serving import Columns
    from modelloop.serving.logger import PredictionLogger, Scored

    model = project.load_served_model()
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    columns = Columns({name: [r.get(name) for r in records] for name in frame.columns}, len(records))
    rows = model.validator.validate(columns, now=datetime(2100, 1, 1))
    predictions = model.predict(frame).tolist()
    PredictionLogger(project.logs).log([Scored(request_id, model.version, rows, predictions)])
    return predictions  # type: ignore[no-any-return]


@pytest.fixture
def make_project(tmp_path: Path, flights: pd.DataFrame) -> Callable[..., Project]:
    """`make_project(frame=None, config=None)`: a fresh, untrained Project in tmp_path."""
    count = iter(range(1000))

    def make(frame: pd.DataFrame | None = None, config: ProjectConfig | None = None) -> Project:
        return build_project(tmp_path / f"project-{next(count)}",
                             flights if frame is None else frame, config)

    return make


@pytest.fixture(scope="session")
def served_project(tmp_path_factory: pytest.TempPathFactory,
                   _flights_once: pd.DataFrame) -> Project:
    """A project whose first candidate was trained at AS_OF and promoted to champion (v1).

    Shared by the whole session: tests that log predictions must find their own rows by
    request id rather than count everything in the log.
    """
    project = build_project(tmp_path_factory.mktemp("served"), _flights_once.copy())
    _, decision = project.train(as_of=AS_OF)
    assert decision is not None and decision.outcome == "promoted", decision
    return project
