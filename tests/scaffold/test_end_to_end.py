"""The promise of `modelloop init --from`: the proposed project file trains with no edit, through
the real CLI (`modelloop train` in a subprocess, a real MLflow store), on real tables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from modelloop.scaffold import Proposal, propose, write
from tests.integration.conftest import cli_json
from tests.scaffold.conftest import hotel_with_extras, seatbelts

pytestmark = pytest.mark.integration


def _train(proposal: Proposal, project: Path) -> dict[str, Any]:
    write(proposal, project)
    result: dict[str, Any] = cli_json("train", cwd=project)
    return result


def _trained_as_proposed(result: dict[str, Any], proposal: Proposal) -> None:
    w = proposal.windows
    assert result["version"] == 1
    assert result["decision"]["outcome"] == "promoted"
    assert result["windows"]["as_of"] == w.last.isoformat()  # the latest time in the data
    assert result["rows"]["train"] == w.train_rows
    assert result["rows"]["holdout"] == w.holdout_rows
    assert result["metric"] == proposal.metric
    assert math.isfinite(result["holdout_score"])


def test_a_monthly_regression_trains_with_no_edit(tmp_path: Path) -> None:
    frame = seatbelts().reset_index(names="month_no")  # an id column: 0, 1, 2, ...
    table = tmp_path / "data" / "seatbelts.csv"
    table.parent.mkdir()
    frame.to_csv(table, index=False)
    project = tmp_path / "project"
    proposal = propose(table, target="DriversKilled", id="month_no", project_dir=project)
    assert proposal.task == "regression" and str(proposal.windows.label_delay) == "1mo"
    result = _train(proposal, project)
    _trained_as_proposed(result, proposal)
    # every month but the latest (its label is not in yet) and the holdout's two years
    assert result["rows"]["train"] == len(frame) - 1 - 24


def test_a_daily_classification_trains_with_no_edit(tmp_path: Path) -> None:
    table = tmp_path / "hotel.parquet"
    hotel_with_extras().to_parquet(table, index=False)
    proposal = propose(table, target="is_repeated_guest", id="rownames", project_dir=tmp_path)
    assert proposal.task == "classification" and proposal.leaks
    result = _train(proposal, tmp_path)
    _trained_as_proposed(result, proposal)
    assert result["holdout_score"] > 0.6  # ROC AUC: the model learnt something (no leak needed)


def test_derived_ids_and_named_classes_train_with_no_edit(tmp_path: Path) -> None:
    frame = hotel_with_extras().drop(columns=["rownames"])
    frame["guest"] = frame.pop("is_repeated_guest").map({1: "returning", 0: "first visit"})
    table = tmp_path / "guests.csv.gz"
    frame.to_csv(table, index=False)
    proposal = propose(table, target="guest", positive="returning", project_dir=tmp_path)
    assert proposal.id is None and proposal.target.positive == "returning"
    result = _train(proposal, tmp_path)
    _trained_as_proposed(result, proposal)
    assert result["holdout_score"] > 0.6
