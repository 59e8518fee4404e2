"""One-step rollback: the champion goes back to the version it replaced; a second rollback
undoes the first; --to reaches any version, never through the gate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from modelloop import ModelloopError
from modelloop.gate import ROLLED_BACK, promote, rollback
from modelloop.project import Project


def _two_champions(make_project: Callable[..., Project], as_of: datetime) -> Project:
    project = make_project()
    project.train(as_of=as_of)
    second, _ = project.train(as_of=as_of, gate=False)
    promote(project.registry, project.name, second.version.version)
    return project


def test_rollback_brings_back_the_previous_version_with_the_reason(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = _two_champions(make_project, as_of)
    registry, name = project.registry, project.name
    assert registry.alias(name, "champion").version == 2  # type: ignore[union-attr]

    done = rollback(registry, project.db, name, reason="p99 doubled after the swap",
                    by="server guardrails", evidence={"p99_ms": [12.0, 31.5]})

    assert (done.from_version, done.to_version) == (2, 1)
    champion = registry.alias(name, "champion")
    assert champion is not None and champion.version == 1 and champion.status == "champion"
    failed = registry.get_version(name, 2)
    assert failed.status == "retired"
    assert failed.tags["modelloop.rollback.reason"] == "p99 doubled after the swap"
    assert registry.alias(name, "previous").version == 2  # type: ignore[union-attr]
    recorded = project.db.decisions()[0]
    assert recorded["outcome"] == ROLLED_BACK and recorded["version"] == 1
    assert recorded["metrics"]["evidence"] == {"p99_ms": [12.0, 31.5]}
    assert recorded["metrics"]["by"] == "server guardrails"


def test_a_second_rollback_undoes_the_first_and_to_reaches_any_version(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = _two_champions(make_project, as_of)
    registry, name = project.registry, project.name
    rollback(registry, project.db, name, reason="bad", by="alice")
    undone = rollback(registry, project.db, name, reason="it was the network", by="alice")
    assert (undone.from_version, undone.to_version) == (1, 2)
    assert registry.alias(name, "champion").version == 2  # type: ignore[union-attr]
    third, _ = project.train(as_of=as_of, gate=False)
    reached = rollback(registry, project.db, name, reason="try 3", by="bob",
                       to=third.version.version)
    assert reached.to_version == 3 and registry.alias(name, "previous").version == 2  # type: ignore[union-attr]
    assert registry.alias(name, "challenger") is None  # it serves now
    with pytest.raises(ModelloopError, match="version 3 is already the champion"):
        rollback(registry, project.db, name, reason="again", by="bob", to=3)


def test_a_rollback_of_a_champion_that_moved_meanwhile_changes_nothing(
        make_project: Callable[..., Project], as_of: datetime) -> None:
    project = _two_champions(make_project, as_of)
    with pytest.raises(ModelloopError, match="version 1 is no longer the champion"):
        rollback(project.registry, project.db, project.name, reason="judged v1", by="server",
                 expected_champion=1)
    assert project.registry.alias(project.name, "champion").version == 2  # type: ignore[union-attr]
    assert project.db.decisions()[0]["outcome"] != ROLLED_BACK


def test_a_rollback_needs_a_reason_and_a_champion(
        make_project: Callable[..., Project]) -> None:
    project = make_project()
    with pytest.raises(ModelloopError, match="needs a reason"):
        rollback(project.registry, project.db, project.name, reason=" ", by="bob")
    with pytest.raises(ModelloopError, match="has no champion"):
        rollback(project.registry, project.db, project.name, reason="why not", by="bob")
