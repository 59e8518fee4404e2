from pathlib import Path

import pytest

from modelloop.registry import MemoryRegistry, MlflowRegistry, check_registry


def test_memory_registry_passes_the_shared_checks() -> None:
    check_registry(MemoryRegistry)


@pytest.mark.integration
def test_mlflow_registry_passes_the_shared_checks(tmp_path: Path) -> None:
    def make() -> MlflowRegistry:
        registry = MlflowRegistry(
            f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=(tmp_path / "mlartifacts").as_uri()
        )
        registry.ensure_store()
        return registry

    check_registry(make)
