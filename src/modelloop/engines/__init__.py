"""Batch-scoring engines: the port, the local and Spark engines, and the checks engines share."""

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

#: The engines `--engine` names.
ENGINES = ("local", "spark")


def get_engine(name: str, *, master: str | None = None) -> ScoringEngine:
    """The engine called `name` (`--engine`); `master` is Spark's (see `modelloop.spark`)."""
    if name == "local":
        if master is not None:
            raise UsageError("--master is Spark's: pass it with --engine spark")
        return LocalEngine()
    if name == "spark":
        # Imported here: PySpark is an extra, and its absence is told when the session starts.
        from modelloop.engines.spark import SparkEngine

        return SparkEngine(master)
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
