"""The model builder: any scikit-learn estimator by class path, with preprocessing that never
turns a new category or a missing value into an error; a bad class path names the field."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from modelloop import ConfigError
from modelloop.data import model_input
from modelloop.training import build_pipeline, resolve_estimator

NUMERIC = ["hour", "distance", "temp"]
CATEGORICAL = ["carrier"]

ESTIMATORS = [
    ("sklearn.ensemble.HistGradientBoostingClassifier", "classification",
     {"max_iter": 30, "random_state": 0}),
    ("sklearn.linear_model.LogisticRegression", "classification", {}),
    ("sklearn.ensemble.RandomForestRegressor", "regression",
     {"n_estimators": 20, "random_state": 0}),
    ("sklearn.ensemble.HistGradientBoostingRegressor", "regression",
     {"max_iter": 30, "random_state": 0}),
]


def training_data(flights: pd.DataFrame, task: str) -> tuple[pd.DataFrame, pd.Series]:
    frame = flights.head(1500).copy()
    frame.loc[::25, "carrier"] = None  # missing categories in training too
    x = model_input(frame, NUMERIC, CATEGORICAL)
    y = frame["delayed"] if task == "classification" else frame["distance"] / 100 + frame["hour"]
    return x, y


def awkward_rows() -> pd.DataFrame:
    """What production sends: a carrier never seen, missing numbers, a missing carrier."""
    return model_input(pd.DataFrame({
        "hour": [np.nan, 6.0, 21.0, 12.0],
        "distance": [800.0, np.nan, 2500.0, 1000.0],
        "temp": [np.nan, np.nan, np.nan, 4.0],
        "carrier": ["ZZ", None, "B6", "XX"],
    }), NUMERIC, CATEGORICAL)


@pytest.mark.parametrize(("path", "task", "params"), ESTIMATORS,
                         ids=[e[0].rsplit(".", 1)[1] for e in ESTIMATORS])
def test_unseen_categories_and_missing_values_are_scored(
        flights: pd.DataFrame, path: str, task: str, params: dict[str, object]) -> None:
    x, y = training_data(flights, task)
    pipeline = build_pipeline(path, params, NUMERIC, CATEGORICAL, task)
    pipeline.fit(x, y)

    rows = awkward_rows()
    values = (pipeline.predict_proba(rows)[:, 1] if task == "classification"
              else pipeline.predict(rows))
    assert values.shape == (4,)
    assert np.isfinite(values).all()
    if task == "classification":
        assert ((values >= 0) & (values <= 1)).all()


@pytest.mark.parametrize(("path", "task", "params"), ESTIMATORS[:2],
                         ids=[e[0].rsplit(".", 1)[1] for e in ESTIMATORS[:2]])
def test_classifiers_learn_the_pattern(flights: pd.DataFrame, path: str, task: str,
                                       params: dict[str, object]) -> None:
    x, y = training_data(flights, task)
    pipeline = build_pipeline(path, params, NUMERIC, CATEGORICAL, task).fit(x, y)
    rows = model_input(pd.DataFrame({"hour": [6.0, 22.0], "distance": [200.0, 2900.0],
                                       "temp": [5.0, 5.0], "carrier": ["DL", "B6"]}),
                         NUMERIC, CATEGORICAL)
    low, high = pipeline.predict_proba(rows)[:, 1]
    assert high - low > 0.3


def test_the_fitted_pipeline_is_plain_scikit_learn(flights: pd.DataFrame) -> None:
    # It is stored as a pickle and loaded where modelloop may not be installed.
    x, y = training_data(flights, "classification")
    pipeline = build_pipeline("sklearn.linear_model.LogisticRegression", {}, NUMERIC,
                              CATEGORICAL, "classification").fit(x, y)
    restored = pickle.loads(pickle.dumps(pipeline))
    assert type(restored).__module__.startswith("sklearn.")
    np.testing.assert_allclose(restored.predict_proba(awkward_rows()),
                               pipeline.predict_proba(awkward_rows()))


def test_a_project_with_only_numeric_features_builds(flights: pd.DataFrame) -> None:
    x = model_input(flights.head(500), NUMERIC, [])
    pipeline = build_pipeline("sklearn.ensemble.HistGradientBoostingClassifier",
                              {"max_iter": 10}, NUMERIC, [], "classification")
    assert pipeline.fit(x, flights["delayed"].head(500)).predict_proba(x).shape == (500, 2)


def test_a_colon_separates_module_and_class_too() -> None:
    from sklearn.linear_model import LogisticRegression

    assert resolve_estimator("sklearn.linear_model:LogisticRegression") is LogisticRegression


@pytest.mark.parametrize(("path", "says"), [
    ("sklearn.ensemble.NoSuchForest", "cannot import 'sklearn.ensemble.NoSuchForest'"),
    ("no_such_package.models.Model", "cannot import 'no_such_package.models.Model'"),
    ("LogisticRegression", "expected a class path such as"),
    ("os.getcwd", "is not an estimator class with fit()"),
    ("collections.OrderedDict", "is not an estimator class with fit()"),
])
def test_a_bad_class_path_is_a_config_error_naming_the_field(path: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_pipeline(path, {}, NUMERIC, CATEGORICAL, "classification")
    message = str(caught.value)
    assert message.startswith("model.estimator: ")
    assert says in message
    assert caught.value.__cause__ is None


def test_unknown_parameters_are_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        build_pipeline("sklearn.linear_model.LogisticRegression", {"max_depth": 3}, NUMERIC,
                       CATEGORICAL, "classification")
    assert str(caught.value).startswith("model.params: ")
    assert "max_depth" in str(caught.value)


def test_a_regressor_cannot_serve_a_classification_project() -> None:
    with pytest.raises(ConfigError) as caught:
        build_pipeline("sklearn.ensemble.RandomForestRegressor", {}, NUMERIC, CATEGORICAL,
                       "classification")
    message = str(caught.value)
    assert "task is 'classification'" in message and "model.estimator" in message
    assert "is a regressor" in message


def test_a_classifier_cannot_serve_a_regression_project() -> None:
    with pytest.raises(ConfigError) as caught:
        build_pipeline("sklearn.ensemble.HistGradientBoostingClassifier", {}, NUMERIC, CATEGORICAL,
                       "regression")
    message = str(caught.value)
    assert message.startswith("task is 'regression' but model.estimator")
    assert "HistGradientBoostingRegressor" in message  # what to use instead


def test_a_classifier_without_probabilities_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"model\.estimator: sklearn\.svm\.LinearSVC has no predict_proba"):
        build_pipeline("sklearn.svm.LinearSVC", {}, NUMERIC, CATEGORICAL, "classification")
