"""The data contract: which columns a model needs, their types, and where nulls are allowed.

Inferred once from the first training data, stored with every model version, and enforced with
pandera on every training run and every scoring request. Breaking it is fatal (missing columns,
wrong types, disallowed nulls); values outside the training range and unseen categories are not:
they are recorded by data quality checks, because summer temperatures and new destinations are
real, not errors.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelloop.config import DataConfig
from modelloop.data.model_input import as_text
from modelloop.spark import PYSPARK_PANDAS_WARNING

ROLES = ("numeric", "categorical", "id", "timestamp", "target")


@dataclass(frozen=True)
class ColumnRule:
    name: str
    role: str
    nullable: bool


@dataclass(frozen=True)
class Problem:
    """One way a frame breaks the contract, with the rows that show it."""

    column: str
    problem: str  # missing_column | wrong_type | null | bad_value
    count: int = 0
    rows: list[Any] = field(default_factory=list)
    examples: list[Any] = field(default_factory=list)
    row_name: str = "rows"

    def describe(self) -> str:
        if self.problem == "missing_column":
            return f"column {self.column!r} is missing"
        what = {
            "wrong_type": "has values of the wrong type",
            "null": "has nulls, which the contract does not allow",
            "bad_value": "has values outside those allowed",
        }[self.problem]
        if not self.rows:
            return f"column {self.column!r} {what}: the column as a whole could not be read as its type"
        examples = ", ".join(repr(v) for v in self.examples[:3])
        shown = f" ({self.row_name} {self.rows[:5]}" + (f", e.g. {examples})" if examples else ")")
        return f"column {self.column!r} {what}: {self.count} row(s){shown}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "problem": self.problem,
            "count": self.count,
            self.row_name: [_jsonable(r) for r in self.rows[:20]],
            "examples": [_jsonable(v) for v in self.examples[:5]],
            "message": self.describe(),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return None if isinstance(value, float) and np.isnan(value) else value
    return str(value)


@dataclass(frozen=True)
class Contract:
    task: str
    columns: tuple[ColumnRule, ...]
    #: The id is not a column of the data but derived from each row (`modelloop.data.row_id`).
    derived_id: bool = False

    @classmethod
    def infer(cls, frame: pd.DataFrame, data: DataConfig, task: str) -> Contract:
        """Features that had nulls in the first training data may have them; the rest may not."""
        rules = [ColumnRule(data.id_column, "id", False), ColumnRule(data.timestamp, "timestamp", False)]
        for name in data.features.numeric:
            rules.append(
                ColumnRule(name, "numeric", bool(name in frame and frame[name].isna().any()))
            )
        for name in data.features.categorical:
            rules.append(
                ColumnRule(name, "categorical", bool(name in frame and frame[name].isna().any()))
            )
        rules.append(ColumnRule(data.target, "target", False))
        return cls(task=task, columns=tuple(rules), derived_id=data.derived_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "task": self.task,
            "columns": [
                {"name": r.name, "role": r.role, "nullable": r.nullable} for r in self.columns
            ],
            "derived_id": self.derived_id,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Contract:
        return cls(
            task=str(raw["task"]),
            columns=tuple(
                ColumnRule(str(c["name"]), str(c["role"]), bool(c["nullable"]))
                for c in raw["columns"]
            ),
            derived_id=bool(raw.get("derived_id", False)),
        )

    def names(self, role: str) -> list[str]:
        return [r.name for r in self.columns if r.role == role]

    @property
    def features(self) -> list[str]:
        return [r.name for r in self.columns if r.role in ("numeric", "categorical")]

    def pandera_schema(self, *, serving: bool) -> Any:
        """The pandera schema: in serving, only features are required (no target, id optional)."""
        with warnings.catch_warnings():
            # With PySpark installed (the spark extra), pandera imports pyspark.pandas, which
            # warns about pandas 3; modelloop never uses pandas through it.
            warnings.filterwarnings("ignore", PYSPARK_PANDAS_WARNING, FutureWarning)
            import pandera.pandas as pa

        columns: dict[str, Any] = {}
        for rule in self.columns:
            required = rule.role in ("numeric", "categorical") or not serving
            if rule.role == "target" and serving:
                continue
            if rule.role == "numeric":
                columns[rule.name] = pa.Column(
                    float, nullable=rule.nullable, coerce=True, required=required
                )
            elif rule.role == "timestamp":
                columns[rule.name] = pa.Column(
                    "datetime64[ns]", nullable=False, coerce=True, required=required
                )
            elif rule.role == "target" and self.task == "classification":
                columns[rule.name] = pa.Column(
                    None, pa.Check.isin([0, 1, True, False]), nullable=False
                )
            elif rule.role == "target":
                columns[rule.name] = pa.Column(float, nullable=False, coerce=True)
            else:
                columns[rule.name] = pa.Column(None, nullable=rule.nullable, required=required)
        return pa.DataFrameSchema(columns, strict=False)

    def check(
        self, frame: pd.DataFrame, *, serving: bool, name_rows_by_id: bool = False
    ) -> tuple[pd.DataFrame, list[Problem]]:
        """Validate and coerce `frame`; returns the coerced frame and every problem found.

        With `name_rows_by_id`, offending rows are named by their id (what a user can look up in
        their data) rather than by position.
        """
        import dataclasses

        import pandera.errors as pe

        schema = self.pandera_schema(serving=serving)
        id_column = next((r.name for r in self.columns if r.role == "id"), None)
        by_id = (
            name_rows_by_id
            and id_column is not None
            and id_column in frame
            and frame[id_column].notna().all()
            and frame[id_column].is_unique
        )
        checked = frame.set_axis(pd.Index(frame[id_column].to_numpy())) if by_id else frame
        try:
            validated = schema.validate(checked, lazy=True)
        except pe.SchemaErrors as exc:
            problems = _problems(exc.failure_cases)
            if by_id:
                problems = [dataclasses.replace(p, row_name=f"{id_column}s") for p in problems]
            return frame, problems
        return self._normalise(validated.set_axis(frame.index) if by_id else validated), []

    def _normalise(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        for name in self.names("categorical"):
            out[name] = as_text(out[name])
        for name in self.names("target"):
            if name in out and self.task == "classification":
                out[name] = out[name].astype("int64")
        return out


_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def _label_text(value: Any) -> str:
    """A class label as comparable text: 1, 1.0, "1" and " Yes " are "1", "1", "1", "yes"."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            number = float(text)
        except ValueError:
            return text
        return str(int(number)) if number.is_integer() else text
    if isinstance(value, (float, np.floating, int, np.integer)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip().lower()


def label_value(
    value: Any, task: str, positive: Any = None, negative: Any = None
) -> float | int | None:
    """One ground-truth value as the metric reads it; None when it is empty (not arrived yet).

    The label rules live here, once, for training data, label files and POST /labels: a
    classification target is 0 or 1 (also true/false and yes/no, and their text), or, when the
    project names its classes (`data.positive`, `data.negative`), one of those two; a regression
    target is a finite number.

    Raises:
        ValueError: the value is neither empty nor usable, with the reason.
    """
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        return None
    if not isinstance(value, (str, bool, np.bool_, int, float, np.integer, np.floating)):
        try:
            missing = bool(pd.isna(value))
        except (TypeError, ValueError):
            missing = False
        if missing:
            return None
        raise ValueError(_expected(task, positive, negative))
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return None
    if task == "classification":
        return _class_value(value, positive, negative)
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise ValueError("must be a number") from None
    if np.isnan(number):
        return None
    if not np.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _class_value(value: Any, positive: Any, negative: Any) -> int:
    text = _label_text(value)
    if positive is not None:
        if text == _label_text(positive):
            return 1
        if negative is None or text == _label_text(negative):
            return 0
    elif text in _TRUE:
        return 1
    elif text in _FALSE:
        return 0
    raise ValueError(_expected("classification", positive, negative))


def _expected(task: str, positive: Any, negative: Any) -> str:
    if task != "classification":
        return "must be a number"
    if positive is None:
        return "must be 0 or 1 (or true/false, yes/no)"
    if negative is None:
        return f"must be a class label ({positive!r} is the positive class)"
    return f"must be {positive!r} or {negative!r}"


def target_values(values: pd.Series, task: str, positive: Any = None, negative: Any = None) -> pd.Series:
    """A target column as the metric reads it (0/1 or a number; NaN where it has not arrived).

    A value the rules refuse is kept as it was, so that the data contract names its rows.
    """
    kind = values.dtype
    if positive is None and pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_bool_dtype(kind):
        return values  # already numbers: the contract checks 0/1 and finiteness
    out: list[Any] = []
    for value in values.tolist():
        try:
            mapped = label_value(value, task, positive, negative)
        except ValueError:
            out.append(value)
        else:
            out.append(np.nan if mapped is None else mapped)
    converted = pd.Series(out, index=values.index, name=values.name, dtype=object)
    numeric = pd.to_numeric(converted, errors="coerce")
    return numeric if numeric.notna().sum() == converted.notna().sum() else converted


def _problems(cases: pd.DataFrame) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for row in cases.itertuples(index=False):
        check = str(row.check)
        if check == "column_in_dataframe":
            key = (str(row.failure_case), "missing_column")
        elif check.startswith(("coerce_dtype", "dtype")):
            key = (str(row.column), "wrong_type")
        elif check == "not_nullable":
            key = (str(row.column), "null")
        else:
            key = (str(row.column), "bad_value")
        if key in seen:
            continue
        seen.add(key)
        if key[1] == "missing_column":
            problems.append(Problem(key[0], "missing_column"))
            continue
        same = cases[
            (cases["column"] == key[0])
            & cases["check"].astype(str).map(lambda c, k=key[1]: _kind(c) == k)
        ]
        # Row-level failures carry an index; a column-level one (pandera could not convert the
        # column at all) has none and its "failure case" is a dtype name, not a user's value.
        row_level = same[same["index"].notna()]
        rows = row_level["index"].tolist()
        if key[1] == "null" or row_level.empty:
            examples: list[Any] = []
        else:
            firsts = row_level.drop_duplicates("index")
            examples = list(dict.fromkeys(_jsonable(v) for v in firsts["failure_case"].tolist()))
        problems.append(
            Problem(
                key[0],
                key[1],
                count=len(set(rows)) if rows else 0,
                rows=_sorted_rows(rows)[:20],
                examples=examples[:5],
            )
        )
    return problems


def _sorted_rows(rows: list[Any]) -> list[Any]:
    unique = list(dict.fromkeys(rows))
    try:
        return sorted(unique)
    except TypeError:
        return unique


def _kind(check: str) -> str:
    if check.startswith(("coerce_dtype", "dtype")):
        return "wrong_type"
    if check == "not_nullable":
        return "null"
    return "bad_value"


def summarize(problems: list[Problem]) -> list[str]:
    """One line per problem, with every missing column named on a single line."""
    missing = [p.column for p in problems if p.problem == "missing_column"]
    lines = []
    if len(missing) == 1:
        lines.append(f"column {missing[0]!r} is missing")
    elif missing:
        lines.append(f"{len(missing)} columns are missing: {', '.join(map(repr, missing))}")
    return lines + [p.describe() for p in problems if p.problem != "missing_column"]


def contract_report(problems: list[Problem], *, origin: str) -> dict[str, Any]:
    return {"origin": origin, "problems": [p.to_dict() for p in problems]}
