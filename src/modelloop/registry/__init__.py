"""Model registry: the port, the MLflow adapter, an in-memory adapter and the shared checks."""

from modelloop.registry.base import (
    STATUS_TAG,
    TRIGGER_TAG,
    ModelVersion,
    Predictor,
    Registry,
    TrainingRecord,
    VersionStatus,
)
from modelloop.registry.checks import check_registry
from modelloop.registry.memory import MemoryRegistry
from modelloop.registry.mlflow import MlflowRegistry

__all__ = [
    "STATUS_TAG",
    "TRIGGER_TAG",
    "MemoryRegistry",
    "MlflowRegistry",
    "ModelVersion",
    "Predictor",
    "Registry",
    "TrainingRecord",
    "VersionStatus",
    "check_registry",
]
