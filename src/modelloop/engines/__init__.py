"""Batch-scoring engines: the port, the local engine, and the shared checks every engine passes."""

from __future__ import annotations

from modelloop.engines.base import (
    ADDED_COLUMNS,
    PREDICTION_COLUMN,
    VERSION_COLUMN,
    Progress,
    ScoreSummary,
    ScoringEngine,
    ScoringModel,
)
from modelloop.engines.checks import check_engine
from modelloop.engines.local import LocalEngine, file_format
from modelloop.errors import UsageError

#: Engines that exist today, and those planned (named in the error, so a user knows it is coming).
ENGINES = ("local",)
PLANNED = ("spark",)


def get_engine(name: str) -> ScoringEngine:
    """The engine called `name` (`--engine`)."""
    if name == "local":
        return LocalEngine()
    if name in PLANNED:
        raise UsageError(
            f"--engine {name}: the {name} engine is not available yet in this version; "
            "use --engine local (the default)"
        )
    raise UsageError(f"--engine {name!r}: no such engine; choose one of: {', '.join(ENGINES)}")


__all__ = [
    "ADDED_COLUMNS",
    "ENGINES",
    "PREDICTION_COLUMN",
    "VERSION_COLUMN",
    "LocalEngine",
    "Progress",
    "ScoreSummary",
    "ScoringEngine",
    "ScoringModel",
    "check_engine",
    "file_format",
    "get_engine",
]
