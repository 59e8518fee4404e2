"""The model as MLflow sees it (models-from-code).

MLflow copies this file next to the model and runs it at load time, so it must import nothing of
modelloop: only mlflow, numpy, pandas and (through joblib) scikit-learn. The fitted pipeline is a
plain scikit-learn object saved as an artifact; `predict` returns a 1-D float array: the positive
class's probability for classifiers, the value for regressors.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel


class ModelloopPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        import joblib

        config = context.model_config or {}
        self.task: str = config["task"]
        self.numeric: list[str] = list(config["numeric"])
        self.categorical: list[str] = list(config["categorical"])
        self.pipeline = joblib.load(context.artifacts["pipeline"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        # A DataFrame hint tells MLflow to validate against the logged signature, not the hint.
        frame = pd.DataFrame(model_input)
        frame = frame[self.numeric + self.categorical].copy()
        for column in self.numeric:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        for column in self.categorical:
            frame[column] = pd.Series(
                [v if isinstance(v, str) else (np.nan if pd.isna(v) else str(v)) for v in frame[column]],
                index=frame.index,
                dtype=object,
            )
        if self.task == "classification":
            return np.asarray(self.pipeline.predict_proba(frame)[:, 1], dtype="float64")
        return np.asarray(self.pipeline.predict(frame), dtype="float64").ravel()


mlflow.models.set_model(ModelloopPyfunc())
