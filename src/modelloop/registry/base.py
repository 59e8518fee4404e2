"""The registry port: model versions, aliases and tags, as the pipelines need them.

MLflow is the adapter we ship (`registry/mlflow.py`); `MemoryRegistry` implements the same port
for fast unit tests, and `check_registry` holds the behaviour both must share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd  # only in annotations: the callers hand frames in

STATUS_TAG = "modelloop.status"
TRIGGER_TAG = "modelloop.trigger"


class VersionStatus(StrEnum):
    """A version's place in the loop, the one vocabulary of tags, database, JSON and README."""

    CANDIDATE = "candidate"  # registered, not yet gated
    PENDING_APPROVAL = "pending_approval"  # passed the gate, waits for a person (gate.approval)
    REJECTED = "rejected"  # failed the gate, or a person rejected it
    CHAMPION = "champion"  # serves
    RETIRED = "retired"  # served before; `previous` names the latest one
    FAILED = "failed"  # its training run did not finish: never gated


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created_at: datetime | None = None
    #: One line a person reads in the registry's UI: the gate's decision (`set_description`).
    description: str | None = None

    @property
    def status(self) -> str | None:
        return self.tags.get(STATUS_TAG)


@dataclass
class TrainingRecord:
    """Everything a training run tracks and registers."""

    name: str
    pipeline: Any
    task: str
    numeric: list[str]
    categorical: list[str]
    example: pd.DataFrame
    run_name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)
    version_tags: dict[str, str] = field(default_factory=dict)
    json_artifacts: dict[str, Any] = field(default_factory=dict)


class Predictor(Protocol):
    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


class Registry(Protocol):
    """The port: what modelloop asks of a model registry."""

    def ensure_store(self) -> None: ...
    def register(self, record: TrainingRecord) -> ModelVersion: ...
    def get_version(self, name: str, version: int) -> ModelVersion: ...
    def versions(self, name: str) -> list[ModelVersion]: ...
    def alias(self, name: str, alias: str) -> ModelVersion | None: ...
    def set_alias(self, name: str, alias: str, version: int) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def set_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None: ...
    def set_description(self, name: str, version: int, description: str) -> None:
        """The version's one-line description (MLflow's UI shows it with the version)."""
        ...
    def load_predictor(self, name: str, version: int) -> Predictor: ...
    def read_json(self, name: str, version: int, artifact: str) -> Any: ...
    def write_json(self, name: str, version: int, artifact: str, payload: Any) -> None:
        """Attach a JSON artifact to the version (its run), e.g. the gate's evidence."""
        ...
