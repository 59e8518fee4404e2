"""Rebasing a real MLflow sqlite store whose folder was copied, then the original deleted."""

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelloop.home import read_record, settle_home
from modelloop.registry import MlflowRegistry
from modelloop.registry.checks import _record
from modelloop.registry.relocate import LOCATION_COLUMNS, rebase_mlflow_store

pytestmark = pytest.mark.integration


def _registry(home: Path) -> MlflowRegistry:
    return MlflowRegistry(
        f"sqlite:///{home / 'mlflow.db'}", artifact_root=(home / "mlartifacts").as_uri(), experiment="m"
    )


def _locations(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        found = []
        for table, column in LOCATION_COLUMNS:
            try:
                found += [str(row[0]) for row in conn.execute(f"SELECT {column} FROM {table}") if row[0]]
            except sqlite3.OperationalError:
                continue  # a table this MLflow does not have
        return found


def _add_experiment(db: Path, name: str, location: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time,"
            " last_update_time) VALUES (?, ?, 'active', 0, 0)",
            (name, location),
        )


def _experiment_location(db: Path, name: str) -> str:
    with sqlite3.connect(db) as conn:
        found = conn.execute("SELECT artifact_location FROM experiments WHERE name = ?", (name,)).fetchone()
        return str(found[0])


@pytest.fixture
def moved(tmp_path: Path) -> tuple[Path, Path]:
    """A store with one registered version at `old/.modelloop`, copied to `new dir/.modelloop`
    (a space: the URI is percent-encoded) with the original deleted."""
    old, new = tmp_path / "old" / ".modelloop", tmp_path / "new dir" / ".modelloop"
    old.mkdir(parents=True)
    _registry(old).register(_record("m", 0.0))
    # Locations that are not under the old home, one of them sharing its name as a prefix.
    _add_experiment(old / "mlflow.db", "remote", "s3://bucket/mlartifacts")
    _add_experiment(old / "mlflow.db", "sibling", f"{old.as_uri()}-other/mlartifacts")
    shutil.copytree(old.parent, new.parent)
    shutil.rmtree(old.parent)
    return old, new


def test_rebase_points_every_location_at_the_copy_and_leaves_others(moved: tuple[Path, Path]) -> None:
    old, new = moved
    db = new / "mlflow.db"
    assert any(str(old) in location for location in _locations(db))  # what a plain copy keeps
    assert rebase_mlflow_store(db, old, new) >= 4  # experiment, run, logged model, version
    assert rebase_mlflow_store(db, old, new) == 0  # a second pass finds nothing left to do
    assert not [loc for loc in _locations(db) if str(old) in loc and "-other" not in loc]
    assert _experiment_location(db, "m") == (new / "mlartifacts").as_uri()
    assert _experiment_location(db, "remote") == "s3://bucket/mlartifacts"
    assert _experiment_location(db, "sibling") == f"{old.as_uri()}-other/mlartifacts"

    registry = _registry(new)
    assert registry.read_json("m", 1, "contract.json") == {"columns": ["x", "c"]}
    frame = pd.DataFrame({"x": [0.1, 2.0], "c": ["a", "b"]})
    assert np.all(np.isfinite(registry.load_predictor("m", 1).predict(frame)))
    # A new version writes under the copy.
    registry.register(_record("m", 1.0))
    assert (new / "mlartifacts").is_dir() and not old.exists()
    run_id = registry.get_version("m", 2).run_id
    assert list((new / "mlartifacts").glob(f"*/{run_id}/artifacts/contract.json")) or list(
        (new / "mlartifacts").glob(f"{run_id}/artifacts/contract.json")
    )


def test_a_home_without_a_record_is_found_moved_by_its_mlflow_store(moved: tuple[Path, Path]) -> None:
    old, new = moved
    first = settle_home(new, experiment="m", tracking_db=new / "mlflow.db", metadata_db=None)
    assert first is not None and first.previous == old and first.to == new
    assert first.rebased["mlflow"] >= 4
    record = read_record(new)
    assert record is not None and record["path"] == str(new) and len(record["moves"]) == 1
    # Opened again at the same place: nothing to do, and the move is not said twice.
    assert settle_home(new, experiment="m", tracking_db=new / "mlflow.db", metadata_db=None) is None
    assert _registry(new).read_json("m", 1, "contract.json") == {"columns": ["x", "c"]}


def test_a_user_store_is_not_rebased(moved: tuple[Path, Path]) -> None:
    old, new = moved
    (new / "home.json").write_text(f'{{"path": "{old}", "moves": []}}', encoding="utf-8")
    move = settle_home(new, experiment="m", tracking_db=None, metadata_db=None)
    assert move is not None and move.rebased == {}
    assert _experiment_location(new / "mlflow.db", "m") == (old / "mlartifacts").as_uri()
