"""The public API is what `modelloop/__init__.py` exports (as httpx's tests/test_exported_members.py
checks for httpx): a sorted `__all__`, every name importable, nothing public left out."""

from __future__ import annotations

import types

import modelloop


def test_all_is_sorted() -> None:
    assert modelloop.__all__ == sorted(modelloop.__all__)


def test_every_exported_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from modelloop import *", namespace)  # what a user's star import gets
    for name in modelloop.__all__:
        assert getattr(modelloop, name) is not None, name
        assert name in namespace, name


def test_every_public_member_is_exported() -> None:
    public = {name for name, value in vars(modelloop).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert public <= set(modelloop.__all__)


def test_load_project_is_open_project() -> None:
    assert modelloop.load_project is modelloop.open_project
