"""The model's input types, in one place: training, gating, serving and the registry all build
feature frames here, so a category is the same text everywhere."""

from __future__ import annotations

import pandas as pd


def as_text(values: pd.Series) -> pd.Series:
    """Categories as str (None where missing): 9 and "9" are one category, as they are in JSON."""
    return pd.Series(
        [v if isinstance(v, str) else (None if pd.isna(v) else str(v)) for v in values],
        index=values.index,
        dtype=object,
    )


def feature_frame(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Features only, numerics as float64 and categoricals as text: the model's input types."""
    out = pd.DataFrame(index=frame.index)
    for name in numeric:
        out[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name in categorical:
        out[name] = as_text(frame[name])
    return out
