"""Delivery metrics: the four DORA measures, for models, from what `modelloop.db` records.

- deployment frequency: promotions (a version made champion by the gate, an approval or a
  forced promotion) per week;
- lead time: from the start of the training run that produced a promoted version (the run
  ledger; for a refit, the run that trained the version it refits) to its promotion;
- change failure rate: the share of promotions later rolled back, by a person or by the
  serving guardrails;
- time to restore: from a promotion that was rolled back to its rollback.

All of it is measured on the wall clock (when things happened: `created_at`, `started_at`),
not on the data's time: a replayed year delivers in minutes. A move of the champion made outside
modelloop, or a rollback, is not a promotion. Values carry their unit in their name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from modelloop.gate.policy import SERVES
from modelloop.gate.rollback import ROLLED_BACK
from modelloop.store import MetadataDB
from modelloop.timeutil import to_naive

#: Enough rows for any project's whole history (a promotion a day for decades).
_ALL = 100_000
_WEEK = timedelta(days=7)
_PROMOTIONS = frozenset(str(outcome) for outcome in SERVES)


@dataclass
class _Promotion:
    version: int
    at: datetime
    rolled_back_at: datetime | None = None


def delivery_metrics(db: MetadataDB, *, now: datetime, window: timedelta | None = None) -> dict[str, Any]:
    """The delivery metrics of the promotions in the `window` before `now` (all history when
    None; then per week over the time since the first recorded move or run, a week at least).

    Keys: `window_days`, `since`, `until`, `promotions`, `deployment_frequency_per_week`,
    `lead_time_hours_median`, `lead_time_hours_p90`, `lead_times_measured` (promotions whose
    training run is in the ledger), `promotions_rolled_back`, `change_failure_rate`,
    `time_to_restore_hours_median`, `rollbacks` (every rollback in the window). With nothing
    to measure a count is 0 and a median or a rate None.
    """
    now = to_naive(now)
    moves = sorted(db.alias_history("champion", limit=_ALL), key=lambda m: (m["created_at"], m["id"]))
    runs = db.runs(limit=_ALL, pipeline="train")
    promotions, rollbacks = _walk(moves)
    if window is not None:
        since: datetime | None = now - window
        weeks = window / _WEEK
    else:
        starts = [_time(m["created_at"]) for m in moves] + [_time(r["started_at"]) for r in runs]
        since = min(starts) if starts else None
        weeks = max((now - since) / _WEEK, 1.0) if since is not None else 1.0
    inside = [p for p in promotions if (since is None or p.at > since) and p.at <= now]
    started = _training_starts(runs, _refits(db))
    lead = [
        (p.at - started[p.version]).total_seconds() / 3600
        for p in inside
        if p.version in started and started[p.version] <= p.at
    ]
    failed = [p for p in inside if p.rolled_back_at is not None and p.rolled_back_at <= now]
    restore = [(p.rolled_back_at - p.at).total_seconds() / 3600 for p in failed if p.rolled_back_at]
    return {
        "window_days": None if window is None else window / timedelta(days=1),
        "since": since.isoformat() if since is not None else None,
        "until": now.isoformat(),
        "promotions": len(inside),
        "deployment_frequency_per_week": round(len(inside) / weeks, 4) if weeks > 0 else 0.0,
        "lead_time_hours_median": _quantile(lead, 0.5),
        "lead_time_hours_p90": _quantile(lead, 0.9),
        "lead_times_measured": len(lead),
        "promotions_rolled_back": len(failed),
        "change_failure_rate": round(len(failed) / len(inside), 4) if inside else None,
        "time_to_restore_hours_median": _quantile(restore, 0.5),
        "rollbacks": sum(1 for at in rollbacks if (since is None or at > since) and at <= now),
    }


def _walk(moves: list[dict[str, Any]]) -> tuple[list[_Promotion], list[datetime]]:
    """The promotions, oldest first, each with the rollback that undid it (if one did), and
    the times of all rollbacks. A rollback undoes the move that last made its `from_version`
    champion, when that move was a promotion (a rollback of a rollback is not a failure)."""
    promotions: list[_Promotion] = []
    rollbacks: list[datetime] = []
    made: dict[int, _Promotion | None] = {}  # version -> the move that last made it champion
    for move in moves:
        at, version = _time(move["created_at"]), move["version"]
        if move["action"] == ROLLED_BACK:
            rollbacks.append(at)
            undone = made.get(move["from_version"])
            if undone is not None and undone.rolled_back_at is None:
                undone.rolled_back_at = at
            if version is not None:
                made[version] = None
        elif move["action"] in _PROMOTIONS and move["source"] == "modelloop" and version is not None:
            promotion = _Promotion(int(version), at)
            promotions.append(promotion)
            made[int(version)] = promotion
        elif version is not None:
            made[int(version)] = None  # found, or moved outside modelloop
    return promotions, rollbacks


def _refits(db: MetadataDB) -> dict[int, int]:
    """refit version -> the gated version it refits, from the decisions that served a refit."""
    out: dict[int, int] = {}
    for decision in db.decisions(limit=_ALL):
        refit = (decision.get("metrics") or {}).get("refit")
        if isinstance(refit, dict) and refit.get("served") and refit.get("version") is not None:
            out[int(refit["version"])] = int(refit.get("of", decision["version"]))
    return out


def _training_starts(runs: list[dict[str, Any]], refits: dict[int, int]) -> dict[int, datetime]:
    """version -> when the training that produced it began: the first attempt's start, when the
    run that registered it was a retry."""
    by_id = {run["id"]: run for run in runs}
    out: dict[int, datetime] = {}
    for run in runs:
        version = (run.get("detail") or {}).get("version")
        if version is None:
            continue
        first = run
        seen = {run["id"]}
        while first.get("retry_of") in by_id and first["retry_of"] not in seen:
            seen.add(first["retry_of"])
            first = by_id[first["retry_of"]]
        start = _time(first["started_at"])
        if int(version) not in out or start < out[int(version)]:
            out[int(version)] = start
    for refit, gated in refits.items():
        if refit not in out and gated in out:
            out[refit] = out[gated]
    return out


def _quantile(values: list[float], q: float) -> float | None:
    return round(float(np.quantile(values, q)), 4) if values else None


def _time(value: str | datetime) -> datetime:
    return to_naive(value if isinstance(value, datetime) else datetime.fromisoformat(value))
