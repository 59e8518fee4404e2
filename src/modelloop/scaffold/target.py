"""Decide the task from the target column, and which class is the positive one.

modelloop predicts one number per row: a positive class's probability (classification, two
classes) or a quantity (regression). A target with more classes is refused with a message, not
guessed into a regression. Two classes spelled 0/1, true/false or yes/no need nothing more;
any other pair ('Up'/'Down', 'M'/'F') must say which class is positive, since the probability
of the wrong class would turn every metric upside down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelloop.data import label_value
from modelloop.errors import DataError, UsageError

Task = Literal["classification", "regression"]
Label = str | int | float | bool

#: A numeric target with at most this many distinct whole values may be class codes: said so.
_FEW_CODES = 10


@dataclass(frozen=True)
class TargetChoice:
    """The task, and for a classification the two classes when they need naming."""

    column: str
    task: Task
    inferred: bool  # False when --task chose it
    reason: str  # why, for the project file's comment
    positive: Label | None = None
    negative: Label | None = None
    unlabelled: int = 0  # rows whose target is empty: not arrived yet, left out of training
    note: str | None = None  # something the user should check


def choose_target(
    frame: pd.DataFrame, target: str, task: str | None, positive: str | None, origin: str
) -> TargetChoice:
    """The task for `target` (`--task` overrides the guess) and its classes; errors say what to do."""
    values = frame[target]
    present = values.dropna()
    if present.empty:
        raise DataError(f"{origin}: the target column {target!r} is empty in every row")
    classes = _distinct(present)
    if len(classes) < 2:
        raise DataError(
            f"{origin}: the target column {target!r} holds one value only ({classes[0]!r}): there "
            "is nothing to predict"
        )
    if task not in (None, "classification", "regression"):
        raise UsageError(f"--task: expected classification or regression, got {task!r}")
    unlabelled = int(values.isna().sum())
    if task == "regression" or (task is None and len(classes) > 2 and _is_number(values)):
        if positive is not None:
            raise UsageError(
                f"--positive {positive}: a positive class only means something for a "
                f"classification, and column {target!r} is predicted as a number (regression)"
            )
        return _regression(values, target, classes, inferred=task is None, unlabelled=unlabelled,
                           origin=origin)
    if len(classes) > 2:
        raise DataError(_multiclass_message(target, classes, origin))
    return _classification(target, classes, positive, inferred=task is None,
                           unlabelled=unlabelled, origin=origin)


def _regression(
    values: pd.Series, target: str, classes: list[Any], *, inferred: bool, unlabelled: int,
    origin: str,
) -> TargetChoice:
    if not _is_number(values):
        example = next((v for v in classes if not _parses_as_number(v)), classes[0])
        raise DataError(
            f"{origin}: --task regression needs a numeric target, but column {target!r} holds "
            f"text such as {example!r}"
        )
    note = None
    whole = all(float(v).is_integer() for v in classes)
    if inferred and whole and len(classes) <= _FEW_CODES:
        note = (
            f"target {target!r} holds only {len(classes)} whole numbers; it is predicted as a "
            "quantity (regression). If they are class codes, modelloop does not support more "
            "than two classes yet."
        )
    reason = (
        f"{target!r} is a number with {len(classes):,} distinct values: predict it (regression)"
        if inferred else "--task regression"
    )
    return TargetChoice(target, "regression", inferred, reason, unlabelled=unlabelled, note=note)


def _classification(
    target: str, classes: list[Any], positive: str | None, *, inferred: bool, unlabelled: int,
    origin: str,
) -> TargetChoice:
    shown = f"{classes[0]!r} and {classes[1]!r}"
    reason = (
        f"{target!r} has two classes, {shown}: predict the positive class's probability"
        if inferred else "--task classification"
    )
    if positive is not None:
        chosen = [v for v in classes if _text(v) == _text(positive)]
        if not chosen:
            raise UsageError(
                f"--positive {positive}: not one of the two classes of column {target!r} in "
                f"{origin}: {shown}"
            )
        pos = chosen[0]
        neg = next(v for v in classes if v is not pos)
        return TargetChoice(target, "classification", inferred, reason,
                            _plain(pos), _plain(neg), unlabelled)
    if _conventional(classes):
        return TargetChoice(target, "classification", inferred, reason, unlabelled=unlabelled)
    raise UsageError(
        f"{origin}: the target column {target!r} has two classes, {shown}, which are not 0/1, "
        "true/false or yes/no; pass --positive with the one whose probability the model should "
        f"predict: --positive {_cli_word(classes[1])} or --positive {_cli_word(classes[0])}"
    )


def as_01(values: pd.Series, choice: TargetChoice) -> pd.Series:
    """A classification target as 1 (positive), 0 (negative) or NaN (empty or unreadable)."""

    def one(value: Any) -> float:
        if pd.isna(value):
            return float("nan")
        if choice.positive is not None:
            return 1.0 if _text(value) == _text(choice.positive) else 0.0
        try:
            read = label_value(value, "classification")
        except ValueError:
            return float("nan")
        return float("nan") if read is None else float(read)

    mapping = {value: one(value) for value in pd.unique(values.dropna())}  # two classes: cheap
    return values.map(mapping).astype(float)


def _multiclass_message(target: str, classes: list[Any], origin: str) -> str:
    listed = ", ".join(repr(v) for v in classes[:6]) + (", ..." if len(classes) > 6 else "")
    return (
        f"{origin}: the target column {target!r} has {len(classes):,} classes ({listed}); "
        "modelloop predicts two classes (classification) or a number (regression), and does "
        "not support more classes yet. Pick a yes/no question instead (a column that is 1 for "
        "one class and 0 for the others), or pass --task regression if the values are a quantity."
    )


def _conventional(classes: list[Any]) -> bool:
    """Two classes the label rules already read as 0 and 1 (0/1, true/false, yes/no)."""
    try:
        read = {label_value(v, "classification") for v in classes}
    except ValueError:
        return False
    return read == {0, 1}


def _distinct(present: pd.Series) -> list[Any]:
    """Distinct values in a stable order (sorted when they can be), as plain Python values."""
    unique = [_plain(v) for v in pd.unique(present)]
    deduped = list(dict.fromkeys(unique))
    try:
        return sorted(deduped)
    except TypeError:
        return sorted(deduped, key=str)


def _is_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)


def _parses_as_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (1.0 stays a float, True a bool)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _text(value: Any) -> str:
    """A class as comparable text: 1, 1.0 and "1" are "1"; " Up " is "up"."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _cli_word(value: Any) -> str:
    text = str(_plain(value))
    return text if text and all(c.isalnum() or c in "._-" for c in text) else repr(text)
