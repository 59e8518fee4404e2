"""Serving: the FastAPI app and the request codecs of MLflow's scoring protocol."""

from modelloop.serving.app import create_app
from modelloop.serving.codecs import parse_invocation, parse_labels

__all__ = ["create_app", "parse_invocation", "parse_labels"]
