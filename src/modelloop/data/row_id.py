"""A stable row id for tables that have none: the row's time and a hash of its feature values.

Labels are joined to predictions by id, so a project without an id column (`data.id` left out)
still needs one that the data, a scoring request and a label file all agree on. The rule, so
anyone can compute it by hand:

    row_id = f"{time:%Y%m%dT%H%M%S}-{sha256(text)[:16]}"

where `time` is the row's timestamp (UTC, naive; microseconds, when present, follow as
`.ffffff`) and `text` is the features' values in the project file's order (numeric, then
categorical) joined by the unit separator "\\x1f": a number as Python writes a float (`9.0`,
`0.25`), a category as its text (`9`, 9.0 and "9" are all `9`, as the model reads them), and a
missing value as the empty string. The target is not part of it: the row is the same row before
and after its label arrives.

Two rows with the same time and the same feature values get the same id: the model cannot tell
them apart either, and their labels are then one label.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from modelloop.data.model_input import as_numbers, as_text

_SEPARATOR = "\x1f"


def _number_text(value: Any) -> str:
    if value is None:
        return ""
    number = float(value)
    return "" if math.isnan(number) else repr(number)


def _category_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def row_id(time: datetime, numbers: Sequence[Any], categories: Sequence[Any]) -> str:
    """The id of one row whose values are already normalised (numbers as float or None/NaN,
    categories as text or None/NaN)."""
    text = _SEPARATOR.join(
        [*(_number_text(v) for v in numbers), *(_category_text(v) for v in categories)]
    )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    if time.microsecond:
        stamp += f".{time.microsecond:06d}"
    return f"{stamp}-{digest}"


def derive_row_ids(
    frame: pd.DataFrame, timestamp: str, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.Series:
    """The id of every row of `frame` (its timestamp column already parsed to datetimes); None
    where the row has no time.

    Raises:
        KeyError: the timestamp or a feature column is missing.
        ValueError: a numeric feature holds text that is not a number.
    """
    missing = [c for c in (timestamp, *numeric, *categorical) if c not in frame.columns]
    if missing:
        raise KeyError(f"a derived row id needs the column(s) {', '.join(map(repr, missing))}")
    times = pd.to_datetime(frame[timestamp]).tolist()
    numbers = [as_numbers(frame[c], c).to_numpy(dtype=np.float64) for c in numeric]
    texts = [as_text(frame[c]).to_numpy() for c in categorical]
    ids = [
        None
        if pd.isna(times[i])
        else row_id(times[i], [column[i] for column in numbers], [column[i] for column in texts])
        for i in range(len(frame))
    ]
    return pd.Series(ids, index=frame.index, dtype=object, name=None)
