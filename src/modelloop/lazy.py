"""A module imported on first use, for the heavy libraries a command may not need.

`modelloop monitor` reads its window in DuckDB and never builds a DataFrame, yet the modules it
passes through also serve commands that do; importing pandas costs about a third of a second
before any data is read. Those modules name pandas through `module("pandas")`: the real import
happens at the first attribute looked up, so a path that never touches pandas never pays for it.
Type checkers see the real module (import it under TYPE_CHECKING beside this).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _Lazy:
    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def module(name: str) -> Any:
    """`name`, imported when one of its attributes is first read."""
    return _Lazy(name)
