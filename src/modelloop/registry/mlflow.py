"""The MLflow adapter of the registry port: tracking runs, model versions, aliases, tags.

Errors stay errors: only MLflow's RESOURCE_DOES_NOT_EXIST means "absent" (`NotFound`, or `None`
for an alias); anything else (a tracking server that does not answer, a broken store) is a
`BackendError` naming the tracking URI, so no caller decides on facts it failed to read.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from modelloop import lazy
from modelloop.errors import BackendError, NotFound
from modelloop.registry.base import ModelVersion, Predictor, TrainingRecord

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy.module("pandas")

_TRAINING = Path(__file__).resolve().parent.parent / "training"
_MODEL_CODE = _TRAINING / "pyfunc_model.py"
_MODEL_INPUT = Path(__file__).resolve().parent.parent / "data" / "model_input.py"
#: The name the row normalisation has inside an artifact's code/ folder (see pyfunc_model.py).
_MODEL_INPUT_MODULE = "modelloop_model_input.py"

T = TypeVar("T")


class _PyfuncPredictor:
    """A loaded version, predicting through the pyfunc's own code (normalisation included).

    It calls the python model directly, skipping MLflow's signature enforcement: the signature
    only says which columns are required, and modelloop's contract has checked those already.
    """

    def __init__(self, pyfunc: Any) -> None:
        self.pyfunc = pyfunc
        self._model = pyfunc.unwrap_python_model()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        result: np.ndarray = self._model.predict_frame(frame)
        return result


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
            from mlflow import MlflowClient

            self._point_mlflow_here()
            self._client_obj = MlflowClient(self.tracking_uri, self.tracking_uri)
        return self._client_obj

    def _point_mlflow_here(self) -> None:
        """MLflow's fluent calls (log_model, load_model, artifacts) read process-wide URIs: set
        them to this store before each, in case another registry in the process moved them."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    def _call(
        self,
        what: str,
        action: Callable[[], T],
        *,
        absent: Callable[[], T] | None = None,
        missing: str | None = None,
    ) -> T:
        """Run one MLflow call: absence goes to `absent` (else NotFound with `missing`), anything
        else is a BackendError naming the tracking URI."""
        from mlflow.exceptions import MlflowException

        try:
            return action()
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                if absent is not None:
                    return absent()
                raise NotFound(missing or f"{what}: not found in the registry") from None
            raise BackendError(f"the model registry at {self.tracking_uri} failed ({what}): {exc}") from exc
        except (OSError, ConnectionError) as exc:
            raise BackendError(f"the model registry at {self.tracking_uri} failed ({what}): {exc}") from exc

    def ensure_store(self) -> None:
        """Create (migrate) the store now, before any second process opens it at the same time."""
        self._experiment_id()

    def _experiment_id(self) -> str:
        client = self._client
        found = self._call("read the experiment", lambda: client.get_experiment_by_name(self.experiment))
        if found is not None:
            return str(found.experiment_id)
        return str(
            self._call(
                "create the experiment",
                lambda: client.create_experiment(self.experiment, artifact_location=self.artifact_root),
            )
        )

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
        from mlflow.models import ModelSignature
        from mlflow.types.schema import AnyType, ColSpec, Schema

        client = self._client
        self._point_mlflow_here()
        # Every feature is required, of any type: the model's own normalisation (shipped in the
        # artifact) decides what a value means, so a CSV's int column where training saw floats
        # is not an error, as MLflow's type enforcement would make it.
        signature = ModelSignature(
            inputs=Schema(
                [ColSpec(AnyType(), name) for name in (*record.numeric, *record.categorical)]  # type: ignore[no-untyped-call]
            )
        )
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
            shipped = Path(tmp) / _MODEL_INPUT_MODULE
            shutil.copyfile(_MODEL_INPUT, shipped)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(_MODEL_CODE),
                artifacts={"pipeline": str(pipeline_path)},
                code_paths=[str(shipped)],
                model_config={
                    "task": record.task,
                    "numeric": record.numeric,
                    "categorical": record.categorical,
                },
                signature=signature,
                pip_requirements=requirements,
            )
            self._call(
                f"registered model {record.name!r}",
                lambda: client.get_registered_model(record.name),
                absent=lambda: client.create_registered_model(
                    record.name, description=f"modelloop project {record.name}"
                ),
            )
            mv = self._call(
                f"register a version of {record.name!r}",
                lambda: client.create_model_version(
                    record.name, source=info.model_uri, run_id=run.info.run_id, tags=record.version_tags
                ),
            )
        return self.get_version(record.name, int(mv.version))

    def get_version(self, name: str, version: int) -> ModelVersion:
        found = self._call(
            f"model {name!r} version {version}",
            lambda: self._client.get_model_version(name, str(version)),
            missing=f"model {name!r} has no version {version}",
        )
        return self._to_version(found)

    def versions(self, name: str) -> list[ModelVersion]:
        found = self._call(
            f"versions of {name!r}",
            lambda: self._client.search_model_versions(f"name='{name}'"),
            absent=list,
        )
        return sorted((self._to_version(mv) for mv in found), key=lambda v: v.version)

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        # Read the model's alias map rather than asking for the alias: MLflow reports a missing
        # alias as INVALID_PARAMETER_VALUE, which cannot be told apart from a real error.
        model = self._call(
            f"registered model {name!r}", lambda: self._client.get_registered_model(name), absent=lambda: None
        )
        if model is None:
            return None
        version = dict(getattr(model, "aliases", {}) or {}).get(alias)
        return None if version is None else self.get_version(name, int(version))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._call(
            f"set alias {alias!r} of {name!r}",
            lambda: self._client.set_registered_model_alias(name, alias, str(version)),
        )

    def delete_alias(self, name: str, alias: str) -> None:
        if self.alias(name, alias) is None:
            return  # deleting an absent alias is a no-op
        self._call(
            f"delete alias {alias!r} of {name!r}",
            lambda: self._client.delete_registered_model_alias(name, alias),
            absent=lambda: None,
        )

    def set_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._call(
                f"tag model {name!r} version {version}",
                lambda key=key, value=value: self._client.set_model_version_tag(  # type: ignore[misc]
                    name, str(version), key, value
                ),
            )

    def load_predictor(self, name: str, version: int) -> Predictor:
        with self._lock:
            key = (name, version)
            if key not in self._predictors:
                import warnings

                import mlflow

                self._point_mlflow_here()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # MLflow's type-hint advice
                    pyfunc = self._call(
                        f"load model {name!r} version {version}",
                        lambda: mlflow.pyfunc.load_model(f"models:/{name}/{version}"),
                    )
                self._predictors[key] = _PyfuncPredictor(pyfunc)
            return self._predictors[key]

    def read_json(self, name: str, version: int, artifact: str) -> Any:
        key = (name, version, artifact)
        if key not in self._json:
            import mlflow

            run_id = self.get_version(name, version).run_id
            self._point_mlflow_here()
            self._json[key] = self._call(
                f"model {name!r} version {version} artifact {artifact}",
                lambda: mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact}"),
                missing=f"model {name!r} version {version} has no artifact {artifact}",
            )
        return self._json[key]


    def write_json(self, name: str, version: int, artifact: str, payload: Any) -> None:
        run_id = self.get_version(name, version).run_id
        client = self._client
        self._call(
            f"model {name!r} version {version}: write {artifact}",
            lambda: client.log_dict(run_id, payload, artifact),
        )
        self._json[(name, version, artifact)] = payload


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."
