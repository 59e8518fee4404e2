"""The model holder: the version the server answers with, swappable under live traffic.

A `ServedModel` is everything one version needs to answer a request: its predictor, its data
contract compiled into a request validator, and the features it was trained on. It is loaded and
warmed before it is handed to the holder, and the holder swaps its reference in one assignment,
so a request is always scored end to end by one version (the one it read at its start) and
never waits on a load. Depends on the registry port only, never on an adapter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelloop.data.contract import Contract
from modelloop.errors import ModelloopError
from modelloop.registry.base import Predictor, Registry
from modelloop.serving.validation import Limits, RequestValidator


@dataclass(frozen=True)
class ServedModel:
    """One loaded, warmed version."""

    name: str
    version: int
    predictor: Predictor
    contract: Contract
    validator: RequestValidator
    load_seconds: float = 0.0

    @property
    def numeric(self) -> list[str]:
        return self.validator.numeric

    @property
    def categorical(self) -> list[str]:
        return self.validator.categorical

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.predictor.predict(frame), dtype="float64").ravel()

    def spark_udf(self, spark: Any) -> Callable[[Mapping[str, Any]], Any]:
        """This version as a Spark UDF (see `modelloop.engines.spark`); only a registry that can
        ship its artifact to Spark's executors (MLflow's) gives one."""
        make = getattr(self.predictor, "spark_udf", None)
        if make is None:
            raise ModelloopError(
                f"model {self.name!r} version {self.version} cannot run on Spark: its registry "
                f"({type(self.predictor).__name__}) cannot ship it to Spark's executors; "
                "use --engine local"
            )
        udf: Callable[[Mapping[str, Any]], Any] = make(spark)
        return udf


def load_served_model(
    registry: Registry, name: str, version: int, *, limits: Limits | None = None
) -> ServedModel:
    """Load `version`, compile its contract, and warm it with one row of missing values (every
    model modelloop builds imputes or handles NaN), so its first request pays no load cost."""
    started = time.perf_counter()
    contract = Contract.from_dict(registry.read_json(name, version, "contract.json"))
    predictor = registry.load_predictor(name, version)
    validator = RequestValidator(contract, limits or Limits())
    model = ServedModel(name, version, predictor, contract, validator)
    warm = pd.DataFrame(
        {
            **{c: np.array([np.nan]) for c in validator.numeric},
            **{c: np.array([np.nan], dtype=object) for c in validator.categorical},
        }
    )
    try:
        model.predict(warm)
    except Exception as exc:  # a model that cannot score at all must not start serving
        raise ModelloopError(
            f"model {name!r} version {version} failed to score a warm-up row: {exc}"
        ) from exc
    return ServedModel(
        name, version, predictor, contract, validator, load_seconds=time.perf_counter() - started
    )


@dataclass
class ModelHolder:
    """Holds the served version; `current` is read once per batch, `swap` replaces it atomically."""

    current: ServedModel
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def version(self) -> int:
        return self.current.version

    def swap(self, model: ServedModel) -> ServedModel:
        """Serve `model` from the next batch on; returns the version it replaced."""
        with self._lock:
            old, self.current = self.current, model
        return old
