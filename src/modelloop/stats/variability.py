"""How much the training data drifts from itself, window to window: the yardstick for adaptive
drift thresholds and for volume anomalies (as NannyML does).

A fixed PSI threshold of 0.2 is too strict for a feature that is noisy at the window's size and
too lax for one that never moves. Measured at training time, chunk by chunk of the training data
against its own profile, the spread of each measure says what a window's ordinary noise looks
like; a window beyond mean + k standard deviations is unusual for this feature. Chunks are as
long as a monitoring window, because the noise of every measure depends on the rows it sees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from modelloop.errors import DataError
from modelloop.stats.counts import count_frame
from modelloop.stats.distance import measure

if TYPE_CHECKING:
    import pandas as pd  # only in annotations: pandas is imported by whoever hands a frame

#: The measures whose chunk-to-chunk spread is kept. Not chi2: a p-value is no distance with a
#: mean and spread, and the chi-square statistic grows with the rows counted.
VARIABLE_MEASURES = ("psi", "jensen_shannon", "wasserstein")


def reference_variability(
    profile: Mapping[str, Any],
    frame: pd.DataFrame,
    *,
    timestamp: str,
    chunk: timedelta,
    min_chunks: int = 4,
    n_chunks: int = 10,
) -> dict[str, Any]:
    """Mean and standard deviation, over chunks of `frame`, of each drift measure of each
    profiled feature against `profile`, and of the rows per chunk.

    Chunks are `chunk` of data time each (by `frame[timestamp]`, from its first value) when that
    gives at least `min_chunks` chunks with rows; else `n_chunks` chunks of equal row counts in
    time order, which say nothing of volume (the rows' std is None then). Rows without a
    timestamp are left out.

    Returns:
        JSON-ready `{"chunking": "time" | "count", "chunk_seconds", "n_chunks",
        "features": {name: {measure: {"mean", "std"}}}, "rows": {"mean", "std", "chunk_seconds"}}`.
        A measure undefined in every chunk, or a std over fewer than two chunks, is left out.
    """
    import pandas as pd

    if timestamp not in frame.columns:
        raise DataError(
            f"cannot chunk the reference by time: {timestamp!r} is not a column "
            f"(it has {sorted(map(str, frame.columns))})"
        )
    if chunk <= timedelta(0):
        raise ValueError(f"chunk must be longer than zero, got {chunk}")
    if min_chunks < 2 or n_chunks < 2:
        raise ValueError(f"min_chunks and n_chunks must be at least 2, got {min_chunks} and {n_chunks}")
    times = pd.to_datetime(frame[timestamp], utc=True, errors="coerce")
    known = times.notna().to_numpy()
    rows, times = frame[known], times[known]
    order = np.argsort(times.to_numpy(), kind="stable")
    rows, times = rows.iloc[order], times.iloc[order]
    seconds = (times - times.min()).dt.total_seconds().to_numpy() if len(rows) else np.zeros(0)
    span = float(seconds[-1]) if seconds.size else 0.0

    index = np.floor(seconds / chunk.total_seconds()).astype(np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(index)) + 1]  # rows are in time order
    if starts.size >= min_chunks and seconds.size:
        chunking, chunk_seconds = "time", chunk.total_seconds()
        pieces = [rows.iloc[a:b] for a, b in pairwise(np.r_[starts, len(rows)])]
        # The last chunk is cut short by the end of the data; between first and last, a chunk
        # without rows is a real period of no rows.
        per_chunk = np.bincount(index, minlength=int(index[-1]) + 1)[:-1].astype(float)
        volume: dict[str, Any] = {"mean": _mean(per_chunk), "std": _std(per_chunk),
                                  "chunk_seconds": chunk_seconds}
    else:
        chunking, chunk_seconds = "count", None
        bounds = np.linspace(0, len(rows), min(n_chunks, len(rows)) + 1).round().astype(int)
        pieces = [rows.iloc[a:b] for a, b in pairwise(bounds)]
        volume = {"mean": _mean([len(p) for p in pieces]), "std": None,
                  "chunk_seconds": span / len(pieces) if pieces and span > 0 else None}

    found: dict[str, dict[str, list[float]]] = {}
    features = profile.get("features", {})
    for piece in pieces:
        for name, counts in count_frame(profile, piece).items():
            measures = measure(features[name], features[name]["shares"], counts)
            for method in VARIABLE_MEASURES:
                value = measures.get(method)
                if value is not None:
                    found.setdefault(name, {}).setdefault(method, []).append(value)
    summary = {
        name: {method: _summary(values) for method, values in by_method.items() if len(values) > 1}
        for name, by_method in found.items()
    }
    return {
        "chunking": chunking,
        "chunk_seconds": chunk_seconds,
        "n_chunks": len(pieces),
        "features": {name: entry for name, entry in summary.items() if entry},
        "rows": volume,
    }


def adaptive_threshold(
    variability: Mapping[str, Any] | None, method: str, k: float = 3.0
) -> float | None:
    """mean + k * std of `method` for one feature (an entry of `reference_variability`'s
    "features"); None when the reference has no spread for it."""
    entry = (variability or {}).get(method)
    if not entry or entry.get("mean") is None or entry.get("std") is None:
        return None
    return float(entry["mean"]) + k * float(entry["std"])


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    return {"mean": _mean(values), "std": _std(values)}


def _mean(values: Sequence[float] | np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _std(values: Sequence[float] | np.ndarray) -> float | None:
    """Sample standard deviation: with few chunks the wider of the two estimates."""
    if len(values) < 2:
        return None
    std = float(np.std(values, ddof=1))
    return std if math.isfinite(std) else None
