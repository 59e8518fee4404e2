"""An in-memory registry implementing the same port, for fast unit tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from modelloop import lazy
from modelloop.errors import NotFound
from modelloop.registry.base import ModelVersion, Predictor, TrainingRecord

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy.module("pandas")


class _PipelinePredictor:
    def __init__(self, record: TrainingRecord) -> None:
        self.record = record

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        from modelloop.data.model_input import model_input

        features = model_input(frame, self.record.numeric, self.record.categorical)
        if self.record.task == "classification":
            return np.asarray(self.record.pipeline.predict_proba(features)[:, 1], dtype="float64")
        return np.asarray(self.record.pipeline.predict(features), dtype="float64").ravel()


class MemoryRegistry:
    def __init__(self) -> None:
        self._records: dict[str, list[TrainingRecord]] = {}
        self._tags: dict[tuple[str, int], dict[str, str]] = {}
        self._created: dict[tuple[str, int], datetime] = {}
        self._descriptions: dict[tuple[str, int], str] = {}
        self._aliases: dict[str, dict[str, int]] = {}

    def ensure_store(self) -> None:
        return None

    def register(self, record: TrainingRecord) -> ModelVersion:
        # JSON round-trip, as a real store would, so tests catch payloads that are not JSON.
        record.json_artifacts = json.loads(json.dumps(record.json_artifacts, allow_nan=False))
        versions = self._records.setdefault(record.name, [])
        versions.append(record)
        key = (record.name, len(versions))
        self._tags[key] = dict(record.version_tags)
        self._created[key] = datetime.now()
        return self.get_version(record.name, len(versions))

    def get_version(self, name: str, version: int) -> ModelVersion:
        key = (name, version)
        if key not in self._tags:
            raise NotFound(f"model {name!r} has no version {version}")
        aliases = tuple(sorted(a for a, v in self._aliases.get(name, {}).items() if v == version))
        return ModelVersion(
            name=name,
            version=version,
            run_id=f"memory-{name}-{version}",
            tags=dict(self._tags[key]),
            aliases=aliases,
            created_at=self._created[key],
            description=self._descriptions.get(key),
        )

    def versions(self, name: str) -> list[ModelVersion]:
        return [self.get_version(name, i + 1) for i in range(len(self._records.get(name, [])))]

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        version = self._aliases.get(name, {}).get(alias)
        return None if version is None else self.get_version(name, version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.get_version(name, version)
        self._aliases.setdefault(name, {})[alias] = version

    def delete_alias(self, name: str, alias: str) -> None:
        self._aliases.get(name, {}).pop(alias, None)

    def set_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        self.get_version(name, version)
        self._tags[(name, version)].update(tags)

    def set_description(self, name: str, version: int, description: str) -> None:
        self.get_version(name, version)
        self._descriptions[(name, version)] = description

    def load_predictor(self, name: str, version: int) -> Predictor:
        self.get_version(name, version)
        return _PipelinePredictor(self._records[name][version - 1])

    def write_json(self, name: str, version: int, artifact: str, payload: Any) -> None:
        self.get_version(name, version)
        self._records[name][version - 1].json_artifacts[artifact] = copy.deepcopy(payload)

    def read_json(self, name: str, version: int, artifact: str) -> Any:
        self.get_version(name, version)
        payloads = self._records[name][version - 1].json_artifacts
        if artifact not in payloads:
            raise NotFound(f"model {name!r} version {version} has no artifact {artifact}")
        return copy.deepcopy(payloads[artifact])
