"""The model as MLflow sees it (models-from-code).

MLflow copies this file next to the model and runs it at load time, so it must import nothing of
modelloop: only mlflow, numpy, pandas, (through joblib) scikit-learn, and `modelloop_model_input`,
the row normalisation that training used, shipped beside it in the artifact's `code/` folder.
`predict` returns a 1-D float array: the positive class's probability for classifiers, the value
for regressors.
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

        # Imported at load time: MLflow puts the artifact's code/ folder on sys.path only then.
        from modelloop_model_input import model_input  # type: ignore[import-not-found]

        self.normalise = model_input

        config = context.model_config or {}
        self.task: str = config["task"]
        self.numeric: list[str] = list(config["numeric"])
        self.categorical: list[str] = list(config["categorical"])
        self.pipeline = joblib.load(context.artifacts["pipeline"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        # A DataFrame hint tells MLflow to validate against the logged signature, not the hint.
        return self.predict_frame(pd.DataFrame(model_input))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """The rows' features, normalised exactly as in training, through the fitted pipeline."""
        features = self.normalise(frame, self.numeric, self.categorical)
        if self.task == "classification":
            return np.asarray(self.pipeline.predict_proba(features)[:, 1], dtype="float64")
        return np.asarray(self.pipeline.predict(features), dtype="float64").ravel()


mlflow.models.set_model(ModelloopPyfunc())
