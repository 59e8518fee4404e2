"""modelloop: a small team's first MLOps system (train, gate, serve, monitor, retrain) on MLflow."""

from modelloop.config import ProjectConfig, load_config
from modelloop.errors import (
    BackendError,
    BadRequest,
    ConfigError,
    DataError,
    ModelloopError,
    NotFound,
)
from modelloop.project import Project, open_project

__version__ = "0.1.0"

load_project = open_project

__all__ = [
    "BackendError",
    "BadRequest",
    "ConfigError",
    "DataError",
    "ModelloopError",
    "NotFound",
    "Project",
    "ProjectConfig",
    "__version__",
    "load_config",
    "load_project",
    "open_project",
]
