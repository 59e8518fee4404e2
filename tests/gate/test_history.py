"""The champion's history: promotions and rollbacks are recorded with who and why; a move made
outside modelloop is found at the next operation, recorded as external, and tags and
`previous` are brought in line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from modelloop.gate.history import EXTERNAL_BY, reconcile
from modelloop.project import Project


def test_a_promotion_is_recorded_with_who_and_why(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = make_project()
    project.train(as_of=as_of)
    moves = project.db.alias_history("champion")
    assert [(m["version"], m["action"], m["by"]) for m in moves] == [(1, "promoted", "gate")]
    event = project.history()[0]
    assert (event["action"], event["version"], event["by"]) == ("promoted", 1, "gate")
    assert "floor" in event["reason"]


def test_a_move_outside_modelloop_is_reconciled_into_the_history(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = make_project()
    project.train(as_of=as_of)
    project.train(as_of=as_of, gate=False)  # version 2, never gated
    registry, name = project.registry, project.name
    registry.set_alias(name, "champion", 2)  # as the MLflow UI would: no tags, no previous

    found = reconcile(registry, project.db, name)

    assert found is not None and (found["from_version"], found["version"]) == (1, 2)
    assert registry.get_version(name, 2).status == "champion"
    assert registry.get_version(name, 1).status == "retired"
    assert registry.alias(name, "previous").version == 1  # type: ignore[union-attr]
    assert reconcile(registry, project.db, name) is None  # once
    event = project.history()[0]
    assert event["action"] == "moved_outside_modelloop" and event["by"] == EXTERNAL_BY
    assert (event["version"], event["from_version"]) == (2, 1)
    # The rollback then goes back to the version the outside move replaced.
    done = project.rollback(reason="the UI move was a mistake", by="carol")
    assert (done.from_version, done.to_version) == (2, 1)
    actions = [e["action"] for e in project.history()]
    assert actions[:2] == ["rolled_back", "moved_outside_modelloop"]
    assert project.history()[0]["by"] == "carol"


def test_a_project_older_than_the_history_starts_from_the_registry(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = make_project()
    project.train(as_of=as_of)
    with project.db._connect().begin() as connection:  # as if promoted before history existed
        connection.exec_driver_sql("DELETE FROM modelloop_alias_history")
    assert reconcile(project.registry, project.db, project.name) is None
    assert project.db.alias_history()[0]["action"] == "found"
