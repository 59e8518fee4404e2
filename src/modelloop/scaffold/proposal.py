"""`propose`: read a table and decide every field of a project file that trains with no edit.

Each decision keeps its reason, so the project file can explain itself and the CLI can show the
same facts (`Proposal.to_dict()` for `--json`, `Proposal.lines()` for people).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from modelloop.config import DERIVED_ID
from modelloop.errors import DataError, UsageError
from modelloop.scaffold.columns import Calendar, Features, LeftOut, sort_columns
from modelloop.scaffold.leaks import Leak
from modelloop.scaffold.table import Table, read_table
from modelloop.scaffold.target import TargetChoice, as_01, choose_target
from modelloop.scaffold.timecol import TimeColumn, choose_time_column
from modelloop.scaffold.windows import Windows, choose_windows
from modelloop.timeutil import format_duration

#: Below this many rows, leaves of 20 rows (scikit-learn's default) leave the trees few splits.
SMALL_TABLE = 1000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Proposal:
    """Everything `render` writes, with the reasons behind it."""

    name: str
    source: str  # as written in the project file: relative to the project folder when possible
    path: Path  # the table read
    table_rows: int  # rows read
    truncated: bool  # the file holds more than MAX_ROWS rows; only the first were read
    target: TargetChoice
    time: TimeColumn
    id: str | None
    features: Features
    windows: Windows
    metric: str
    estimator: str
    params: dict[str, Any]
    target_spread: float | None = None  # regression: the target's standard deviation
    notes: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.target.task

    @property
    def seasonal(self) -> list[Calendar]:
        return self.features.seasonal

    @property
    def leaks(self) -> list[Leak]:
        return self.features.leaks

    @property
    def left_out(self) -> list[LeftOut]:
        return self.features.left_out

    def to_dict(self) -> dict[str, Any]:
        """The facts a script needs (`modelloop init --from ... --json`)."""
        return {
            "name": self.name,
            "source": self.source,
            "rows_read": self.table_rows,
            "truncated": self.truncated,
            "task": self.task,
            "task_inferred": self.target.inferred,
            "target": self.target.column,
            "positive": self.target.positive,
            "negative": self.target.negative,
            "unlabelled_rows": self.target.unlabelled,
            "timestamp": self.time.name,
            "timestamp_inferred": self.time.inferred,
            "id": self.id,
            "derived_id": self.id is None,
            "features": {
                "numeric": list(self.features.numeric),
                "categorical": list(self.features.categorical),
            },
            "left_out": [
                {"column": c.column, "reason": c.reason.value, "detail": c.detail}
                for c in self.left_out
            ],
            "leaks": [
                {"column": leak.column, "statistic": leak.statistic, "value": round(leak.value, 4)}
                for leak in self.leaks
            ],
            "seasonal": [c.column for c in self.seasonal],
            "windows": self.windows.to_dict(),
            "metric": self.metric,
            "estimator": self.estimator,
            "params": dict(self.params),
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """A short account for the terminal, one fact per line, no markup."""
        w = self.windows
        target = self.target
        classes = (
            f" (positive {target.positive!r}, negative {target.negative!r})"
            if target.positive is not None
            else ""
        )
        out = [
            f"task: {self.task}{'' if target.inferred else ' (--task)'}, target {target.column!r}{classes}",
            f"time: {self.time.name!r}{' (found)' if self.time.inferred else ''}, "
            f"{w.cadence.value}, {w.first:%Y-%m-%d} to {w.last:%Y-%m-%d}",
            f"id: {self.id!r}" if self.id else f"id: none, modelloop derives {DERIVED_ID!r}",
            f"features: {len(self.features.numeric)} numeric, {len(self.features.categorical)} "
            "categorical",
        ]
        out += [f"  left out {c.column!r}: {c.detail}" for c in self.left_out]
        if self.seasonal:
            out.append("seasonal: " + ", ".join(f"{c.column} ({c.kind})" for c in self.seasonal))
        out.append(
            f"windows: train {format_duration(w.training)} ({w.train_rows:,} rows), holdout "
            f"{format_duration(w.holdout)} ({w.holdout_rows:,} rows), label delay "
            f"{format_duration(w.label_delay)}, monitoring "
            f"{format_duration(w.monitoring)}, cooldown {format_duration(w.cooldown)}"
        )
        out += [f"note: {n}" for n in self.notes]
        return out


def propose(
    path: Path,
    *,
    target: str,
    time: str | None = None,
    id: str | None = None,
    task: str | None = None,
    positive: str | None = None,
    name: str | None = None,
    project_dir: Path,
) -> Proposal:
    """Read `path` and propose a project for predicting `target`; user mistakes raise
    `ModelloopError` subclasses naming the file, column or option."""
    table = read_table(Path(path))
    frame = table.frame
    origin = str(table.path)
    for option, column in (("--target", target), ("--time", time), ("--id", id)):
        _check_column(frame, option, column, origin)
    if len({target, time, id} - {None}) < len([c for c in (target, time, id) if c is not None]):
        raise UsageError("--target, --time and --id must name three different columns")
    choice = choose_target(frame, target, task, positive, origin)
    id_column = _id_column(frame, id, origin)
    roles = [c for c in (target, id_column) if c is not None]
    timecol = choose_time_column(frame.drop(columns=roles), time, origin)
    windows = choose_windows(timecol.values, origin, labelled=frame[target].notna())
    others = [str(c) for c in frame.columns if c not in {target, timecol.name, id_column}]
    features = sort_columns(frame, others, _target_numbers(frame[target], choice), _is_clf(choice))
    if not features.numeric and not features.categorical:
        raise DataError(
            f"{origin}: no column is left to be a feature once the time, target and id are set "
            f"aside and {', '.join(c.column for c in features.left_out) or 'nothing'} left out"
        )
    small = len(frame) < SMALL_TABLE
    return Proposal(
        name=_name(name, table.path),
        source=source_text(table.path, project_dir),
        path=table.path,
        table_rows=len(frame),
        truncated=table.truncated,
        target=choice,
        time=timecol,
        id=id_column,
        features=features,
        windows=windows,
        metric="roc_auc" if _is_clf(choice) else "rmse",
        estimator="sklearn.ensemble.HistGradientBoosting"
        + ("Classifier" if _is_clf(choice) else "Regressor"),
        params={
            "max_iter": 200,
            "learning_rate": 0.1,
            **({"min_samples_leaf": 5} if small else {}),
            "random_state": 0,
        },
        target_spread=_spread(frame[target]) if not _is_clf(choice) else None,
        notes=_notes(table, choice, features, id_column, timecol.name),
    )


def _check_column(frame: pd.DataFrame, option: str, column: str | None, origin: str) -> None:
    if column is None or column in frame.columns:
        return
    names = [str(c) for c in frame.columns]
    close = [c for c in names if c.lower() == column.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
    raise UsageError(f"{option} {column}: no such column in {origin}{hint}; columns: {listed}")


def _id_column(frame: pd.DataFrame, id: str | None, origin: str) -> str | None:
    """--id, checked; a column already named `row_id` is taken as the id; else none (derived)."""
    if id is None and DERIVED_ID in frame.columns:
        id = DERIVED_ID  # that name is the derived id's: the column must be the id
    if id is None:
        return None
    values = frame[id]
    empty = int(values.isna().sum())
    if empty:
        raise DataError(
            f"{origin}: --id {id}: the column is empty in {empty} row(s); an id needs a value in "
            "every row"
        )
    if not values.is_unique:
        repeated = values[values.duplicated()].iloc[0]
        count = int(values.duplicated(keep=False).sum())
        raise DataError(
            f"{origin}: --id {id}: the values are not unique ({count} rows share a value, e.g. "
            f"{repeated!r}); an id names one row. Leave out --id to let modelloop derive one"
        )
    return id


def _target_numbers(values: pd.Series, choice: TargetChoice) -> pd.Series | None:
    """The target as numbers for the leak checks: the value, or 1 for the positive class."""
    if choice.task == "regression":
        return pd.to_numeric(values, errors="coerce")
    numbers = as_01(values, choice)
    return numbers if numbers.notna().any() else None


def _spread(values: pd.Series) -> float | None:
    """The standard deviation: the rmse of always predicting the mean, a bar any model must clear."""
    spread = pd.to_numeric(values, errors="coerce").std()
    return None if pd.isna(spread) else float(spread)


def _is_clf(choice: TargetChoice) -> bool:
    return choice.task == "classification"


def _name(name: str | None, path: Path) -> str:
    """--name, checked; else the file's name without its suffixes, made a valid model name."""
    if name is not None:
        if not _NAME.match(name):
            raise UsageError(
                f"--name {name!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
            )
        return name
    stem = path.name
    for suffix in (".gz", ".csv", ".parquet", ".pq"):
        stem = stem.removesuffix(suffix).removesuffix(suffix.upper())
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).lstrip("_.-").rstrip("-")
    return cleaned or "model"


def source_text(path: Path, project_dir: Path) -> str:
    """The table's path as the project file should hold it: relative to the project folder when
    both are on one drive, with glob characters escaped (`data.source` is a glob)."""
    absolute = path.resolve()
    try:
        text = Path(os.path.relpath(absolute, project_dir.resolve())).as_posix()
    except ValueError:  # another drive (Windows): only an absolute path reaches it
        text = absolute.as_posix()
    return glob.escape(text)


def _notes(
    table: Table, choice: TargetChoice, features: Features, id_column: str | None, time: str
) -> list[str]:
    notes = []
    if id_column is None:
        same = int(table.frame.duplicated([time, *features.numeric, *features.categorical]).sum())
        if same:
            notes.append(
                f"{same:,} row(s) repeat another row's time and feature values, so they share its "
                f"derived {DERIVED_ID!r} and a label for one is a label for all; pass --id COLUMN "
                "if the table has an id"
            )
    if table.truncated:
        total = f" of {table.total_rows:,}" if table.total_rows else ""
        notes.append(
            f"the table holds more than {table.limit:,} rows: the proposal looked at the first "
            f"{table.limit:,}{total}; check the windows against the whole table"
        )
    if choice.unlabelled:
        notes.append(
            f"{choice.unlabelled:,} row(s) have no {choice.column!r}: training leaves them out, "
            "as rows whose label has not arrived yet"
        )
    if choice.note:
        notes.append(choice.note)
    return notes
