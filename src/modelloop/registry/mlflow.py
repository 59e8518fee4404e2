"""The MLflow adapter of the registry port: tracking runs, model versions, aliases, tags.

Errors stay errors: only MLflow's RESOURCE_DOES_NOT_EXIST means "absent" (`NotFound`, or `None`
for an alias); anything else (a tracking server that does not answer, a broken store) is a
`BackendError` naming the tracking URI, so no caller decides on facts it failed to read.
"""

from __future__ import annotations

import os
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

#: MLflow's client settings modelloop uses unless the environment sets them. MLflow's defaults
#: retry a tracking server that does not answer for about four minutes (made for rate limits),
#: so a command against a server that is down would hang that long before saying so; and MLflow
#: prints each run's URL to stdout, where `--json` output must be alone.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def use_client_defaults() -> None:
    """Set `CLIENT_DEFAULTS` in the environment, where MLflow reads them on each request; a
    value the user set is kept."""
    for variable, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(variable, value)


class _PyfuncPredictor:
    """A loaded version, predicting through the pyfunc's own code (normalisation included).

    It calls the python model directly, skipping MLflow's signature enforcement: the signature
    only says which columns are required, and modelloop's contract has checked those already.
    """

    def __init__(self, pyfunc: Any, *, uri: str = "", point: Callable[[], None] | None = None) -> None:
        self.pyfunc = pyfunc
        self._model = pyfunc.unwrap_python_model()
        self.uri = uri
        self._point = point

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        result: np.ndarray = self._model.predict_frame(frame)
        return result

    def spark_udf(self, spark: Any) -> Callable[[Mapping[str, Any]], Any]:
        """This version as a Spark UDF: `mlflow.pyfunc.spark_udf` ships the artifact to the
        executors, whose Python workers run this interpreter (`env_manager="local"`) and the
        pyfunc's own `predict`, normalisation included. The returned function takes the feature
        columns by name and gives a Column of doubles."""
        import logging

        import mlflow

        if self._point is not None:
            self._point()
        # MLflow warns that "local" does not rebuild the training environment: here it is this
        # very interpreter, the one the local engine and the server score with.
        loggers = [logging.getLogger(n) for n in ("mlflow.pyfunc", "mlflow.models.flavor_backend_registry")]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            udf = mlflow.pyfunc.spark_udf(spark, self.uri, result_type="double", env_manager="local")
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
        names: list[str] = list(udf.metadata.get_input_schema().input_names())

        def apply(columns: Mapping[str, Any]) -> Any:
            # Passed by position, in the signature's order (MLflow names them from it).
            return udf(*(columns[name] for name in names))

        return apply


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

        use_client_defaults()
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
            raise BackendError(
                f"the model registry at {self.tracking_uri} failed ({what}): {describe_failure(exc)}"
            ) from exc
        except (OSError, ConnectionError) as exc:
            raise BackendError(
                f"the model registry at {self.tracking_uri} failed ({what}): {describe_failure(exc)}"
            ) from exc

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
            description=mv.description or None,
        )

    def register(self, record: TrainingRecord) -> ModelVersion:
        # A run is many calls (params, metrics, artifacts, the model): any of them may fail on a
        # tracking server, and a failure half-way is the registry's error like any other.
        return self._call(f"log the training run of {record.name!r}", lambda: self._register(record))

    def _register(self, record: TrainingRecord) -> ModelVersion:
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
                # A tracking server checks a `models:/m-...` source against its logged model
                # (a local store does not): the id must come with it.
                lambda: client.create_model_version(
                    record.name, source=info.model_uri, run_id=run.info.run_id,
                    tags=record.version_tags, model_id=info.model_id,
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

    def set_description(self, name: str, version: int, description: str) -> None:
        self._call(
            f"describe model {name!r} version {version}",
            lambda: self._client.update_model_version(name, str(version), description=description),
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
                self._predictors[key] = _PyfuncPredictor(
                    pyfunc, uri=f"models:/{name}/{version}", point=self._point_mlflow_here
                )
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


#: MLflow's error codes for a tracking server that refuses the caller, by HTTP status.
_REFUSED = {"UNAUTHENTICATED": 401, "CUSTOMER_UNAUTHORIZED": 401, "PERMISSION_DENIED": 403}


def describe_failure(exc: BaseException) -> str:
    """What a failed MLflow call met, said plainly when it is a tracking server's answer (or its
    silence); MLflow's own message otherwise. MLflow wraps the HTTP error it met, so the chain
    is searched for it."""
    import requests

    chain: list[BaseException] = []
    found: BaseException | None = exc
    while found is not None and len(chain) < 5:
        chain.append(found)
        found = found.__cause__ or found.__context__
    for error in chain:
        status = getattr(getattr(error, "response", None), "status_code", None)
        status = status or _REFUSED.get(str(getattr(error, "error_code", "")))
        if status == 401:
            return ("the server asks who you are (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to credentials it accepts")
        if status == 403:
            return ("the server refused these credentials (HTTP 403): the user in "
                    "MLFLOW_TRACKING_USERNAME (or MLFLOW_TRACKING_TOKEN) lacks the permission")
        if isinstance(error, requests.Timeout):
            return "no answer within MLFLOW_HTTP_REQUEST_TIMEOUT seconds: is the server overloaded?"
        if isinstance(error, requests.ConnectionError):
            return "cannot connect: is the tracking server running, and is the URI right?"
        if isinstance(error, requests.exceptions.RetryError):
            reason = getattr(error.args[0] if error.args else None, "reason", None)
            return f"the server kept failing after MLflow's retries ({reason or error})"
    return str(exc)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."
