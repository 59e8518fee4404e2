"""The `modelloop` command line: thin; it parses, calls Project, and renders with rich."""

from modelloop.cli.app import app, main

__all__ = ["app", "main"]
