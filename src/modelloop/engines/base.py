"""The scoring-engine port: what `modelloop score` asks of an engine, whatever runs it.

An engine streams an input file through a loaded model and writes every input column plus the
prediction and the version. The local engine (pyarrow, one machine) is the default; a Spark
engine can join behind the same `ScoringEngine` protocol without a new interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from modelloop.data.contract import Contract

#: Columns an engine adds to every scored row; an input that already has them is refused.
PREDICTION_COLUMN = "_prediction"
VERSION_COLUMN = "_model_version"
ADDED_COLUMNS = (PREDICTION_COLUMN, VERSION_COLUMN)

#: `progress(rows_done, rows_total)`: called with 0 when scoring starts, then after each chunk;
#: the total is None when the input cannot tell it up front (a CSV).
Progress = Callable[[int, int | None], None]


class ScoringModel(Protocol):
    """What an engine needs of a model (the serving layer's `ServedModel` is one).

    `predict` runs the model artifact's own normalisation, so an engine passes the feature
    columns as read and never converts them itself: one copy of that logic, no train/serve skew.
    """

    @property
    def version(self) -> int: ...

    @property
    def contract(self) -> Contract: ...

    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class ScoreSummary:
    """What one scoring job did: enough to record it and to tell the user."""

    input: Path
    output: Path
    version: int
    rows: int
    chunks: int
    seconds: float
    engine: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "output": str(self.output),
            "version": self.version,
            "rows": self.rows,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "engine": self.engine,
        }


class ScoringEngine(Protocol):
    """The port. `score` reads at most about `chunk_rows` rows at a time, whatever the input's
    size, and leaves nothing at `output` unless every row was scored."""

    @property
    def name(self) -> str: ...

    def score(
        self,
        input: Path,
        output: Path,
        *,
        model: ScoringModel,
        chunk_rows: int,
        progress: Progress | None = None,
    ) -> ScoreSummary: ...
