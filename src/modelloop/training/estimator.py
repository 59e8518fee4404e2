"""Build the scikit-learn pipeline for any estimator named by class path.

Preprocessing is chosen so a production request never errors on data a user would call normal:
unseen categories map to "unknown", missing values are imputed (or passed to estimators that
handle them natively), and everything is plain scikit-learn so the model loads without modelloop.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from typing import Any

from modelloop.errors import ConfigError


def resolve_estimator(class_path: str) -> type[Any]:
    """Import `package.module.Class` (or `package.module:Class`), naming the field on failure."""
    module_name, _, class_name = class_path.replace(":", ".").rpartition(".")
    if not module_name:
        raise ConfigError(
            f"model.estimator: expected a class path such as "
            f"sklearn.ensemble.HistGradientBoostingClassifier, got {class_path!r}"
        )
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model.estimator: cannot import {class_path!r}: {exc}") from None
    if not inspect.isclass(cls) or not hasattr(cls, "fit"):
        raise ConfigError(f"model.estimator: {class_path!r} is not an estimator class with fit()")
    return cls


def build_pipeline(
    class_path: str, params: dict[str, Any], numeric: list[str], categorical: list[str], task: str
) -> Any:
    """A Pipeline(preprocess -> estimator) for the project's features."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    cls = resolve_estimator(class_path)
    native = "categorical_features" in inspect.signature(cls).parameters
    # The kind of model first, as its parameters depend on it; an estimator that requires
    # parameters is checked with them below.
    with contextlib.suppress(TypeError):
        _check_task(cls(), class_path, task)
    try:
        estimator = cls(**params)
        if hasattr(estimator, "_validate_params"):
            estimator._validate_params()  # scikit-learn checks values only at fit time otherwise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model.params: {class_path} does not accept these parameters: {exc}") from None
    _check_task(estimator, class_path, task)

    steps: list[tuple[str, Any, list[str]]] = []
    if native:
        # HistGradientBoosting: NaN handled natively; categories as ordinal codes, unseen -> NaN.
        if numeric:
            steps.append(("numeric", "passthrough", numeric))
        if categorical:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
                dtype=np.float64,
            )
            steps.append(("categorical", encoder, categorical))
        if categorical and "categorical_features" not in params:
            first = len(numeric)
            estimator.set_params(categorical_features=list(range(first, first + len(categorical))))
    else:
        if numeric:
            steps.append(
                (
                    "numeric",
                    Pipeline(
                        [
                            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                            ("scale", StandardScaler()),
                        ]
                    ),
                    numeric,
                )
            )
        if categorical:
            steps.append(
                (
                    "categorical",
                    Pipeline(
                        [
                            (
                                "impute",
                                SimpleImputer(strategy="constant", fill_value="__missing__"),
                            ),
                            (
                                "encode",
                                OneHotEncoder(
                                    handle_unknown="infrequent_if_exist",
                                    min_frequency=5,
                                    sparse_output=False,
                                ),
                            ),
                        ]
                    ),
                    categorical,
                )
            )
    preprocess = ColumnTransformer(steps, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def _check_task(estimator: Any, class_path: str, task: str) -> None:
    """A classifier for a regression project (or the reverse) is one message naming both fields."""
    from sklearn.base import is_classifier, is_regressor

    if task == "regression" and is_classifier(estimator):
        raise ConfigError(
            f"task is 'regression' but model.estimator {class_path} is a classifier: use a "
            "regressor (e.g. sklearn.ensemble.HistGradientBoostingRegressor) or task: classification"
        )
    if task == "classification" and is_regressor(estimator):
        raise ConfigError(
            f"task is 'classification' but model.estimator {class_path} is a regressor: use a "
            "classifier (e.g. sklearn.ensemble.HistGradientBoostingClassifier) or task: regression"
        )
    if task == "classification" and not hasattr(estimator, "predict_proba"):
        raise ConfigError(
            f"model.estimator: {class_path} has no predict_proba; a classification "
            "project needs probabilities to rank and to monitor"
        )
