"""The behaviour every scoring engine shares, asserted once (like scikit-learn's check_estimator).

Run `check_engine(engine, model, rows, workdir)` with a loaded model and a frame of rows valid
for it (every feature of its contract, at least 30 rows); each check works in its own folder
under `workdir` and the AssertionError names the check that failed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelloop.data.contract import Contract
from modelloop.engines.base import (
    ADDED_COLUMNS,
    PREDICTION_COLUMN,
    VERSION_COLUMN,
    ScoringEngine,
    ScoringModel,
)
from modelloop.errors import DataError

_FORMATS = {"parquet": ".parquet", "csv": ".csv", "csv.gz": ".csv.gz"}


def check_engine(engine: ScoringEngine, model: ScoringModel, rows: pd.DataFrame, workdir: Path) -> None:
    """Assert the shared scoring semantics on `rows` (at least 30 valid rows for `model`)."""
    if len(rows) < 30:
        raise ValueError(f"check_engine needs at least 30 rows, got {len(rows)}")
    for check in _CHECKS:
        folder = workdir / check.__name__.lstrip("_")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            check(engine, model, rows.reset_index(drop=True), folder)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__} ({type(engine).__name__}): {exc}") from exc


def write_rows(rows: pd.DataFrame, path: Path) -> Path:
    """`rows` as the file its name says (.parquet, .csv or .csv.gz), without the index."""
    if path.name.endswith(".parquet"):
        rows.to_parquet(path, index=False)
    else:
        rows.to_csv(path, index=False)
    return path


def read_rows(path: Path) -> pd.DataFrame:
    """The file as pandas reads it: what a user compares an engine's output with."""
    return pd.read_parquet(path) if path.name.endswith(".parquet") else pd.read_csv(path)


class _Recording:
    """A model that records the rows of every call, and can be told to fail on one."""

    def __init__(self, model: ScoringModel, *, interrupt_on: int | None = None) -> None:
        self.model = model
        self.sizes: list[int] = []
        self.interrupt_on = interrupt_on

    @property
    def version(self) -> int:
        return self.model.version

    @property
    def contract(self) -> Contract:
        return self.model.contract

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.sizes.append(len(frame))
        if self.interrupt_on is not None and len(self.sizes) == self.interrupt_on:
            raise KeyboardInterrupt
        return self.model.predict(frame)


def _raises(kind: type[BaseException], action: Callable[[], Any]) -> BaseException:
    try:
        action()
    except kind as exc:
        return exc
    raise AssertionError(f"expected {kind.__name__}, nothing was raised")


def _left(folder: Path, *expected: Path) -> None:
    extra = sorted(p.name for p in folder.iterdir() if p not in expected)
    assert not extra, f"files left behind: {extra}"


def _formats(engine: ScoringEngine, model: ScoringModel, rows: pd.DataFrame, folder: Path) -> None:
    chunk = len(rows) // 3 + 1
    for source_format in ("parquet", "csv"):
        source = write_rows(rows, folder / f"in{_FORMATS[source_format]}")
        expected = model.predict(read_rows(source))
        for target_format, suffix in _FORMATS.items():
            target = folder / f"out-{source_format}{suffix}"
            summary = engine.score(source, target, model=model, chunk_rows=chunk)
            assert (summary.rows, summary.chunks) == (len(rows), math.ceil(len(rows) / chunk)), summary
            assert summary.version == model.version and summary.output == target, summary
            scored = read_rows(target)
            assert list(scored.columns) == [*rows.columns, *ADDED_COLUMNS], list(scored.columns)
            assert scored[PREDICTION_COLUMN].dtype == np.float64
            assert scored[VERSION_COLUMN].dtype == np.int64
            assert (scored[VERSION_COLUMN] == model.version).all()
            gap = np.max(np.abs(scored[PREDICTION_COLUMN].to_numpy() - expected))
            assert gap <= 1e-12, f"{source_format} -> {target_format}: predictions differ by {gap}"
            if source_format == target_format:
                pd.testing.assert_frame_equal(scored[list(rows.columns)], read_rows(source))


def _chunks(engine: ScoringEngine, model: ScoringModel, rows: pd.DataFrame, folder: Path) -> None:
    source = write_rows(rows, folder / "in.parquet")
    recording = _Recording(model)
    seen: list[tuple[int, int | None]] = []
    engine.score(
        source,
        folder / "out.parquet",
        model=recording,
        chunk_rows=7,
        progress=lambda done, total: seen.append((done, total)),
    )
    sizes = [7] * (len(rows) // 7) + ([len(rows) % 7] if len(rows) % 7 else [])
    assert recording.sizes == sizes, f"chunk sizes {recording.sizes}, expected {sizes}"
    assert [done for done, _ in seen] == [0, *np.cumsum(sizes).tolist()], seen
    scored = read_rows(folder / "out.parquet")[PREDICTION_COLUMN].to_numpy()
    gap = np.max(np.abs(scored - model.predict(read_rows(source))))
    assert gap <= 1e-12, f"chunked predictions differ from the whole frame's by {gap}"


def _bad_value(engine: ScoringEngine, model: ScoringModel, rows: pd.DataFrame, folder: Path) -> None:
    column = model.contract.names("numeric")[0]
    chunk = len(rows) // 4
    bad = rows.astype({column: object})
    bad.loc[2 * chunk + 1, column] = "not-a-number"  # in the third chunk
    source = write_rows(bad, folder / "in.csv")
    target = folder / "out.parquet"
    target.write_bytes(b"previous")
    error = _raises(DataError, lambda: engine.score(source, target, model=model, chunk_rows=chunk))
    message = str(error)
    for part in (str(source), repr(column), str(2 * chunk + 2), "not-a-number"):
        assert part in message, f"{part!r} not in {message!r}"
    assert target.read_bytes() == b"previous", "a failed job changed the existing output"
    _left(folder, source, target)


def _null(engine: ScoringEngine, model: ScoringModel, rows: pd.DataFrame, folder: Path) -> None:
    rules = [r for r in model.contract.columns if r.role in ("numeric", "categorical")]
    strict = [r.name for r in rules if not r.nullable]
    if not strict:
        return
    chunk = len(rows) // 4
    bad = rows.copy()
    bad.loc[2 * chunk + 1, strict[0]] = None
    source = write_rows(bad, folder / "in.parquet")
    error = _raises(
        DataError, lambda: engine.score(source, folder / "out.csv", model=model, chunk_rows=chunk)
    )
    for part in (repr(strict[0]), str(2 * chunk + 2), "null"):
        assert part in str(error), f"{part!r} not in {str(error)!r}"
    _left(folder, source)


def _missing(engine: ScoringEngine, model: ScoringModel, rows: pd.DataFrame, folder: Path) -> None:
    gone = model.contract.features[:2]
    source = write_rows(rows.drop(columns=gone), folder / "in.csv")
    error = _raises(
        DataError, lambda: engine.score(source, folder / "out.parquet", model=model, chunk_rows=10)
    )
    for part in (str(source), *map(repr, gone)):
        assert part in str(error), f"{part!r} not in {str(error)!r}"
    _left(folder, source)


def _taken(engine: ScoringEngine, model: ScoringModel, rows: pd.DataFrame, folder: Path) -> None:
    source = write_rows(rows.assign(**{PREDICTION_COLUMN: 0.5}), folder / "in.parquet")
    error = _raises(
        DataError, lambda: engine.score(source, folder / "out.parquet", model=model, chunk_rows=10)
    )
    assert repr(PREDICTION_COLUMN) in str(error), str(error)
    _left(folder, source)


def _interrupt(engine: ScoringEngine, model: ScoringModel, rows: pd.DataFrame, folder: Path) -> None:
    source = write_rows(rows, folder / "in.parquet")
    for suffix in (".parquet", ".csv"):
        stopping = _Recording(model, interrupt_on=2)
        _raises(
            KeyboardInterrupt,
            lambda: engine.score(source, folder / f"out{suffix}", model=stopping, chunk_rows=10),  # noqa: B023
        )
        _left(folder, source)


def _empty(engine: ScoringEngine, model: ScoringModel, rows: pd.DataFrame, folder: Path) -> None:
    for suffix in (".parquet", ".csv"):
        source = write_rows(rows.head(0), folder / f"in{suffix}")
        summary = engine.score(source, folder / f"out{suffix}", model=model, chunk_rows=10)
        assert (summary.rows, summary.chunks) == (0, 0), summary
        scored = read_rows(folder / f"out{suffix}")
        assert len(scored) == 0 and list(scored.columns) == [*rows.columns, *ADDED_COLUMNS]


_CHECKS: tuple[Callable[[ScoringEngine, ScoringModel, pd.DataFrame, Path], None], ...] = (
    _formats,
    _chunks,
    _bad_value,
    _null,
    _missing,
    _taken,
    _interrupt,
    _empty,
)
