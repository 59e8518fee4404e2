"""The MLflow adapter of the registry port: tracking runs, model versions, aliases, tags."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from modelloop.data.frames import feature_frame
from modelloop.errors import NotFound
from modelloop.registry.base import ModelVersion, Predictor, TrainingRecord

_MODEL_CODE = Path(__file__).resolve().parent.parent / "training" / "pyfunc_model.py"


class MlflowRegistry:
    """MLflow tracking + model registry at `tracking_uri` (sqlite file, or a remote server)."""

    def __init__(
        self, tracking_uri: str, *, artifact_root: str | None = None, experiment: str = "modelloop"
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.experiment = experiment
        self._predictors: dict[tuple[str, int], Predictor] = {}
        self._json: dict[tuple[str, int, str], Any] = {}
        self._lock = threading.Lock()
        self._client_obj: Any = None

    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            import mlflow
            from mlflow import MlflowClient

            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            self._client_obj = MlflowClient(self.tracking_uri, self.tracking_uri)
        return self._client_obj

    def ensure_store(self) -> None:
        """Create (migrate) the store now, before any second process opens it at the same time."""
        self._experiment_id()

    def _experiment_id(self) -> str:
        client = self._client
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        return str(client.create_experiment(self.experiment, artifact_location=self.artifact_root))

    def _to_version(self, mv: Any) -> ModelVersion:
        created = (
            datetime.fromtimestamp(mv.creation_timestamp / 1000) if mv.creation_timestamp else None
        )
        return ModelVersion(
            name=mv.name,
            version=int(mv.version),
            run_id=mv.run_id,
            tags=dict(mv.tags or {}),
            aliases=tuple(getattr(mv, "aliases", []) or ()),
            created_at=created,
        )

    def register(self, record: TrainingRecord) -> ModelVersion:
        import warnings

        import joblib
        import mlflow
        import numpy
        import pandas
        import sklearn
        from mlflow.models import infer_signature

        client = self._client
        example = feature_frame(record.example, record.numeric, record.categorical)
        signature = infer_signature(example)
        requirements = [
            f"mlflow=={mlflow.__version__}",
            f"scikit-learn=={sklearn.__version__}",
            f"pandas=={pandas.__version__}",
            f"numpy=={numpy.__version__}",
            f"joblib=={joblib.__version__}",
        ]
        with (
            warnings.catch_warnings(),
            tempfile.TemporaryDirectory() as tmp,
            mlflow.start_run(experiment_id=self._experiment_id(), run_name=record.run_name) as run,
        ):
            mlflow.log_params({k: _short(v) for k, v in record.params.items()})
            mlflow.log_metrics(record.metrics)
            mlflow.set_tags(record.run_tags)
            for artifact, payload in record.json_artifacts.items():
                mlflow.log_dict(payload, artifact)
            # MLflow nags about type hints and input examples; the signature is given explicitly.
            warnings.simplefilter("ignore", UserWarning)
            pipeline_path = Path(tmp) / "pipeline.joblib"
            joblib.dump(record.pipeline, pipeline_path)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(_MODEL_CODE),
                artifacts={"pipeline": str(pipeline_path)},
                model_config={
                    "task": record.task,
                    "numeric": record.numeric,
                    "categorical": record.categorical,
                },
                signature=signature,
                pip_requirements=requirements,
            )
            try:
                client.get_registered_model(record.name)
            except Exception:  # MLflow raises RestException/MlflowException for "not found"
                client.create_registered_model(
                    record.name, description=f"modelloop project {record.name}"
                )
            mv = client.create_model_version(
                record.name, source=info.model_uri, run_id=run.info.run_id, tags=record.version_tags
            )
        return self.get_version(record.name, int(mv.version))

    def get_version(self, name: str, version: int) -> ModelVersion:
        try:
            return self._to_version(self._client.get_model_version(name, str(version)))
        except Exception as exc:
            raise NotFound(f"model {name!r} has no version {version}") from exc

    def versions(self, name: str) -> list[ModelVersion]:
        found = self._client.search_model_versions(f"name='{name}'")
        return sorted((self._to_version(mv) for mv in found), key=lambda v: v.version)

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        try:
            return self._to_version(self._client.get_model_version_by_alias(name, alias))
        except Exception:  # no such model or alias
            return None

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        try:
            self._client.delete_registered_model_alias(name, alias)
        except Exception:  # deleting an absent alias is a no-op
            return

    def set_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_model_version_tag(name, str(version), key, value)

    def load_predictor(self, name: str, version: int) -> Predictor:
        with self._lock:
            key = (name, version)
            if key not in self._predictors:
                import warnings

                import mlflow

                self._client  # noqa: B018  (sets the tracking and registry URIs)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # MLflow's type-hint advice
                    self._predictors[key] = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
            return self._predictors[key]

    def read_json(self, name: str, version: int, artifact: str) -> Any:
        key = (name, version, artifact)
        if key not in self._json:
            import mlflow

            run_id = self.get_version(name, version).run_id
            self._client  # noqa: B018
            try:
                self._json[key] = mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact}")
            except Exception as exc:
                raise NotFound(
                    f"model {name!r} version {version} has no artifact {artifact}"
                ) from exc
        return self._json[key]


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."
