"""The model's input, normalised in one place: what a row becomes before the fitted pipeline sees it.

Training fits on `model_input(...)`, and this very file travels inside every model artifact
(MLflow `code_paths`, as `modelloop_model_input.py`), where the pyfunc applies it before
predicting. So training, the gate, the server, batch scoring and plain
`mlflow.pyfunc.load_model` give the same numbers for the same rows, whatever estimator is used:
a second copy of this logic is how train/serve skew happens.

It imports numpy and pandas only: a model must load where modelloop is not installed.

The rules:
- numeric features become float64; an int column (a CSV read by pandas) is not an error, a
  number sent as text ("5.5") is read as a number, anything else is a ValueError naming the
  column;
- categorical features become text, with one spelling per category: 9, 9.0 and "9" are the
  category "9" (a CSV column with gaps is read as floats), True is "True";
- every kind of missing value (None, NaN, NaT, pd.NA) becomes NaN, the one marker scikit-learn's
  imputers and encoders treat as missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Frames up to this many rows are converted value by value: faster than pandas' vector calls.
_SMALL = 64
#: Object columns up to this many rows are checked value by value to be used as they are.
_CHECKED = 4096


def category_text(value: Any) -> Any:
    """One category's text; NaN when the value is missing."""
    if isinstance(value, str):
        return value
    if value is None:
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return np.nan
        return str(int(value)) if float(value).is_integer() else str(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        if pd.isna(value):
            return np.nan
    except (TypeError, ValueError):  # array-likes have no single truth value: not missing
        pass
    return str(value)


def as_text(values: pd.Series) -> pd.Series:
    """A column of categories as text (object dtype, NaN where missing)."""
    array = values.to_numpy(dtype=object, na_value=np.nan) if len(values) else np.array([], dtype=object)
    if len(array) > _SMALL and pd.api.types.infer_dtype(array, skipna=True) in ("string", "empty"):
        text = array.copy()
        text[pd.isna(text)] = np.nan
    else:
        text = np.array([category_text(v) for v in array], dtype=object)
    return pd.Series(text, index=values.index, dtype=object, name=values.name)


def as_numbers(values: pd.Series, column: str) -> pd.Series:
    """A numeric feature as float64; text that is not a number is an error naming the column."""
    if values.dtype == np.float64:
        return values
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(values.to_numpy(dtype=np.float64, na_value=np.nan), index=values.index)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        example = values[bad].iloc[0]
        raise ValueError(
            f"column {column!r} must hold numbers: {int(bad.sum())} value(s) are not, e.g. {example!r}"
        )
    return numbers.astype(np.float64)


def model_input(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """The features in the model's order and types (see the module's rules); other columns dropped.

    Raises:
        KeyError: a feature column is missing (the message names every missing one).
        ValueError: a numeric feature holds something that is not a number.
    """
    order = [*numeric, *categorical]
    if _ready(frame, numeric, categorical, order):
        return frame  # already the model's input (the server builds it so): no copy, no new frame
    missing = [name for name in order if name not in frame.columns]
    if missing:
        raise KeyError(f"the model needs the column(s) {', '.join(map(repr, missing))}")
    columns: dict[str, Any] = {}
    for name in numeric:
        columns[name] = as_numbers(frame[name], name).to_numpy()
    for name in categorical:
        columns[name] = pd.Series(as_text(frame[name]).to_numpy(), index=frame.index, dtype=object)
    # Categories stay object arrays of str (pandas 3 would infer its Arrow-backed text type,
    # which scikit-learn converts back at every call): the same values, the cheaper form.
    return pd.DataFrame(columns, index=frame.index)


def _ready(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], order: list[str]) -> bool:
    """Whether `frame` is already exactly the model's input: the features in order, numbers as
    float64, categories as text with NaN where missing (checked by dtype, and value by value
    only for small object columns)."""
    if list(frame.columns) != order:
        return False
    dtypes = frame.dtypes.tolist()
    if any(dtype != np.float64 for dtype in dtypes[: len(numeric)]):
        return False
    checked: list[int] = []
    for offset, dtype in enumerate(dtypes[len(numeric) :]):
        if isinstance(dtype, pd.StringDtype) and dtype.na_value is np.nan:
            continue
        if dtype != np.dtype(object) or len(frame) > _CHECKED:
            return False
        checked.append(len(numeric) + offset)
    if checked:
        # One conversion of the whole frame, not one per column: a request's frame is small.
        values = frame.to_numpy(dtype=object)
        for value in values[:, checked].ravel():
            if not isinstance(value, str) and not (isinstance(value, float) and value != value):
                return False
    return True
