"""Production replay: before a candidate replaces the champion, both score the latest logged
traffic that has labels, window by window.

Only traffic after the end of the candidate's training window counts (never rows it was fitted
on), and only labels that had arrived by the candidate's as-of (`monitoring.label_delay`). The
period is the last `gate.replay` of it, cut into `gate.replay_window` windows (default the
monitoring window), newest last. A window with fewer labelled rows than
`monitoring.min_labelled_rows` is reported as too small and not judged. The candidate may lose
at most `gate.max_lost_windows` judged windows, and must not lose on all judged rows together;
"lose" uses the gate's own tolerance. With no champion, or no labelled traffic yet, the replay
is reported and decides nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from modelloop.config import ProjectConfig
from modelloop.registry import ModelVersion, Registry
from modelloop.stats import score
from modelloop.store import LogStore
from modelloop.timeutil import format_duration


@dataclass
class ReplayWindow:
    start: datetime
    end: datetime
    rows: int
    candidate: float | None = None
    champion: float | None = None
    #: "won", "lost", "tied" or "too small"
    verdict: str = "too small"

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "candidate": self.candidate,
            "champion": self.champion,
            "verdict": self.verdict,
        }


@dataclass
class Replay:
    passed: bool
    reason: str
    windows: list[ReplayWindow] = field(default_factory=list)
    candidate: float | None = None
    champion: float | None = None
    lost: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "aggregate": {"candidate": self.candidate, "champion": self.champion},
            "lost": self.lost,
            "windows": [w.to_dict() for w in self.windows],
        }


def _worse(candidate: float, champion: float, config: ProjectConfig) -> bool:
    gate = config.gate
    allowed = gate.tolerance
    if gate.relative_tolerance is not None:
        allowed = max(allowed, gate.relative_tolerance * abs(champion))
    return candidate < champion - allowed if config.maximize else candidate > champion + allowed


def _labelled_traffic(
    config: ProjectConfig, logs: LogStore, start: datetime, end: datetime, arrived_by: datetime
) -> pd.DataFrame:
    data = config.data
    rows = logs.read_predictions(start, end)
    if rows.empty:
        return rows
    labels = logs.read_labels()
    if labels.empty:
        return rows.iloc[0:0]
    rows = rows[rows[data.timestamp] <= pd.Timestamp(arrived_by)]
    truth = (
        labels[[data.id_column, data.target]]
        .assign(_key=labels[data.id_column].astype(str))
        .drop(columns=[data.id_column])
        .drop_duplicates("_key", keep="last")
    )
    joined = rows.drop(columns=[data.target], errors="ignore").assign(
        _key=rows[data.id_column].astype(str)
    )
    return joined.merge(truth, on="_key", how="inner").drop(columns=["_key"])


def replay(
    config: ProjectConfig,
    *,
    registry: Registry,
    logs: LogStore,
    candidate: ModelVersion,
    champion: ModelVersion | None,
    predict: Callable[[int, pd.DataFrame], Any],
) -> Replay:
    """Score candidate and champion on the replayed windows and judge (see the module doc)."""
    gate, mon, data = config.gate, config.monitoring, config.data
    assert gate.replay is not None
    span = format_duration(gate.replay)
    if champion is None:
        return Replay(True, f"replay ({span}): no champion to compare with, not judged")
    train_end = candidate.tags.get("modelloop.window.train_end")
    as_of_tag = candidate.tags.get("modelloop.as_of")
    latest = logs.latest_prediction_time()
    if not train_end or not as_of_tag or latest is None:
        return Replay(True, f"replay ({span}): no logged traffic yet, not judged")
    as_of = pd.Timestamp(as_of_tag).to_pydatetime()
    end = min(pd.Timestamp(latest).to_pydatetime().replace(tzinfo=None), as_of)
    start = max(pd.Timestamp(train_end).to_pydatetime(), end - gate.replay)
    traffic = _labelled_traffic(config, logs, start, end, as_of - mon.label_delay)
    if traffic.empty:
        return Replay(
            True,
            f"replay ({span}): no labelled traffic after the candidate's training window "
            f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}), not judged",
        )
    traffic = traffic.sort_values(data.timestamp, kind="stable").reset_index(drop=True)
    truth = traffic[data.target].to_numpy()
    cand = np.asarray(predict(candidate.version, traffic), dtype="float64")
    champ = np.asarray(predict(champion.version, traffic), dtype="float64")
    stamps = traffic[data.timestamp]
    size = gate.replay_window or mon.window
    windows: list[ReplayWindow] = []
    upper = end
    while upper > start:
        lower = max(upper - size, start)
        mask = ((stamps > pd.Timestamp(lower)) & (stamps <= pd.Timestamp(upper))).to_numpy()
        window = ReplayWindow(lower, upper, int(mask.sum()))
        if window.rows >= mon.min_labelled_rows:
            window.candidate = score(config.evaluation.metric, truth[mask], cand[mask])
            window.champion = score(config.evaluation.metric, truth[mask], champ[mask])
            if window.candidate is not None and window.champion is not None:
                if _worse(window.candidate, window.champion, config):
                    window.verdict = "lost"
                elif window.candidate == window.champion:
                    window.verdict = "tied"
                else:
                    window.verdict = "won"
            else:
                window.verdict = "too small"  # the metric is undefined (one class)
        windows.append(window)
        upper = lower
    windows.reverse()
    judged = [w for w in windows if w.verdict != "too small"]
    metric = config.evaluation.metric
    result = Replay(True, "", windows)
    result.candidate = score(metric, truth, cand)
    result.champion = score(metric, truth, champ)
    result.lost = sum(w.verdict == "lost" for w in judged)
    small = len(windows) - len(judged)
    head = (
        f"replay ({span}, {len(traffic):,} labelled rows after the training window, "
        f"{len(windows)} window(s), {small} too small to judge)"
    )
    if not judged or result.candidate is None or result.champion is None:
        result.reason = f"{head}: nothing to judge"
        return result
    lost_aggregate = _worse(result.candidate, result.champion, config)
    too_many = result.lost > gate.max_lost_windows
    result.passed = not (lost_aggregate or too_many)
    result.reason = (
        f"{head}: {metric} {result.candidate:.4f} vs champion {result.champion:.4f} on all of it, "
        f"lost {result.lost} of {len(judged)} window(s) (at most {gate.max_lost_windows}): "
        + ("passed" if result.passed else "FAILED")
    )
    return result
