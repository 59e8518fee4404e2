"""Reference profiles kept beside the project's state, so monitoring reads a local JSON file
instead of asking the registry (MLflow: seconds of import and queries) on every run.

A version's profile never changes once registered, so a copy keyed by version is never stale.
The cache is filled when a version is trained (`put`) and, for versions trained before it
existed, on first use from the registry (`fetch`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modelloop.errors import DataError, NotFound


class ProfileCache:
    """`profile.json` of each model version, as files `<directory>/<version>.json`.

    Call it with a version (it is a `ProfileSource` for `run_monitoring`). A version not cached
    yet is read with `fetch` (e.g. from the registry) and kept; without `fetch` it is `NotFound`.
    """

    def __init__(
        self, directory: str | Path, fetch: Callable[[int], Mapping[str, Any]] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.fetch = fetch

    def __call__(self, version: int) -> Mapping[str, Any]:
        path = self.path(version)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if self.fetch is None:
                raise NotFound(f"no reference profile of version {version} in {self.directory}") from None
            profile = self.fetch(version)
            self.put(version, profile)
            return profile
        try:
            found: Mapping[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path} is not a reference profile ({exc}); delete it and it is read again "
                "from the registry"
            ) from exc
        return found

    def put(self, version: int, profile: Mapping[str, Any]) -> Path:
        """Keep `profile` for `version` (written whole or not at all)."""
        path = self.path(version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(profile, handle, allow_nan=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def path(self, version: int) -> Path:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"a model version is a positive int, got {version!r}")
        return self.directory / f"{version}.json"
