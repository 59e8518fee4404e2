"""modelloop: a small team's first MLOps system (train, gate, serve, monitor, retrain) on MLflow.

The heavy parts (pandas, pyarrow, SQLAlchemy, MLflow) load when first used, not on
`import modelloop`, so `modelloop --help` answers at once.
"""

import importlib as _importlib
import typing as _typing

from modelloop.errors import (
    BackendError,
    BadRequest,
    ConfigError,
    DataError,
    ModelloopError,
    NotFound,
    UsageError,
)

if _typing.TYPE_CHECKING:
    from modelloop.config import ProjectConfig, load_config
    from modelloop.project import Project, open_project

    load_project = open_project

__version__ = "0.1.0"

#: Public names that live in heavier modules: imported on first access.
_LAZY = {
    "ProjectConfig": ("modelloop.config", "ProjectConfig"),
    "load_config": ("modelloop.config", "load_config"),
    "Project": ("modelloop.project", "Project"),
    "open_project": ("modelloop.project", "open_project"),
    "load_project": ("modelloop.project", "open_project"),
}


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(_importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelloop' has no attribute {name!r}")


__all__ = [
    "BackendError",
    "BadRequest",
    "ConfigError",
    "DataError",
    "ModelloopError",
    "NotFound",
    "Project",
    "ProjectConfig",
    "UsageError",
    "__version__",
    "load_config",
    "load_project",
    "open_project",
]
