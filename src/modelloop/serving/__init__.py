"""Serving: the HTTP app (above `Project`) and what it is built from (below it): request codecs,
validation compiled from the data contract, the model holder, the micro-batcher and the
prediction logger, which writes through the log port.

`create_app` is imported lazily: `Project` itself imports the holder from this package, and the
app imports `Project`'s module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelloop.serving.codecs import Columns, parse_invocation, parse_labels
from modelloop.serving.holder import ModelHolder, ServedModel, load_served_model
from modelloop.serving.validation import Limits, RequestValidator, ValidRows

if TYPE_CHECKING:
    from modelloop.serving.app import create_app

__all__ = [
    "Columns",
    "Limits",
    "ModelHolder",
    "RequestValidator",
    "ServedModel",
    "ValidRows",
    "create_app",
    "load_served_model",
    "parse_invocation",
    "parse_labels",
]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from modelloop.serving.app import create_app

        return create_app
    raise AttributeError(f"module 'modelloop.serving' has no attribute {name!r}")
