"""Ground truth as it arrives: which rows of a label file are usable, with errors naming the
column and the rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from modelloop.config import DataConfig
from modelloop.data.contract import label_value
from modelloop.data.row_id import derive_row_ids
from modelloop.data.sources import parse_timestamps
from modelloop.errors import DataError, shown


def prepare_labels(frame: pd.DataFrame, data: DataConfig, task: str) -> tuple[pd.DataFrame, int]:
    """(the id and target of the rows to store, how many were skipped). A row whose target is
    empty has not arrived yet and is skipped; a target the metric cannot use is refused, naming
    the rows (counting the first data row as 1). Without an id column in the project file, a
    label file may carry `row_id` or the row's time and features, from which the id is derived."""
    if data.derived_id and data.id_column not in frame.columns and data.target in frame.columns:
        frame = _with_derived_ids(frame, data)
    missing = [c for c in (data.id_column, data.target) if c not in frame.columns]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(map(repr, missing))}; a label file needs the id column "
            f"{data.id_column!r} and the target column {data.target!r}"
            + (
                f" (or, for the id, the time {data.timestamp!r} and the features)"
                if data.derived_id
                else ""
            )
        )
    targets: list[float | int | None] = []
    bad: list[int] = []
    reason = ""
    for position, value in enumerate(frame[data.target].tolist()):
        try:
            targets.append(label_value(value, task, data.positive, data.negative))
        except ValueError as exc:
            reason = reason or str(exc)
            bad.append(position)
            targets.append(None)
    if bad:
        example = shown(frame[data.target].iloc[bad[0]])
        raise DataError(
            f"column {data.target!r} {reason}: {len(bad)} row(s) are not "
            f"(rows {[i + 1 for i in bad[:5]]}, e.g. {example})"
        )
    keep = [i for i, t in enumerate(targets) if t is not None]
    empty_ids = frame[data.id_column].isna().to_numpy()
    if empty_ids[keep].any():
        rows = [i + 1 for i in keep if empty_ids[i]][:5]
        count = int(empty_ids[keep].sum())
        raise DataError(f"column {data.id_column!r} is empty in {count} row(s) (rows {rows})")
    kept = pd.DataFrame(
        {
            data.id_column: frame[data.id_column].iloc[keep].tolist(),
            data.target: [targets[i] for i in keep],
        }
    )
    return kept, len(frame) - len(keep)


def _with_derived_ids(frame: pd.DataFrame, data: DataConfig) -> pd.DataFrame:
    """A label file without `row_id`: the id derived from its time and feature columns."""
    needed = [data.timestamp, *data.features.all]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise DataError(
            f"missing column {data.id_column!r}; without it a label file needs the row's time "
            f"and features to derive it, and {', '.join(map(repr, absent))} "
            f"{'is' if len(absent) == 1 else 'are'} missing"
        )
    stamped = parse_timestamps(frame.copy(), data.timestamp, "the label file")
    try:
        ids = derive_row_ids(stamped, data.timestamp, data.features.numeric, data.features.categorical)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return frame.assign(**{data.id_column: ids.to_numpy()})


def read_label_file(path: Path) -> pd.DataFrame:
    """A CSV or Parquet label file, or a DataError naming the file and what is wrong."""
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if not path.name.lower().endswith((".csv", ".csv.gz", ".parquet", ".pq")):
        raise DataError(f"{path}: a label file must be CSV (.csv, .csv.gz) or Parquet (.parquet, .pq)")
    as_csv = path.name.lower().endswith((".csv", ".csv.gz"))
    try:
        return pd.read_csv(path) if as_csv else pd.read_parquet(path)
    except Exception as exc:  # pandas/pyarrow raise many kinds; all mean "unreadable"
        raise DataError(f"{path}: cannot read it as {'CSV' if as_csv else 'Parquet'}: {exc}") from None
