"""Which failed runs `modelloop up` tries again, when, and which have no retry left.

A run started by a schedule, a trigger, the API or a retry that failed (or was interrupted by a
stop) is tried again after `retries.backoff`, doubled at each attempt, `retries.count` times; the
retry runs at the failed run's as-of and parameters. When none is left, an alert is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modelloop.config import RetriesConfig
from modelloop.orchestration.ledger import RETRIED, RunStatus
from modelloop.store import MetadataDB

#: Failures older than this are history, not work: a restart does not retry last month's runs.
_HORIZON = timedelta(days=1)


@dataclass
class RetryPlan:
    due: list[dict[str, Any]]
    #: Failed runs with no retry left, with how many attempts were made.
    exhausted: list[tuple[dict[str, Any], int]]


def backoff_for(retries: RetriesConfig, attempt: int) -> timedelta:
    """The wait after attempt `attempt` (1-based) failed: backoff, 2x backoff, 4x backoff..."""
    factor: int = 2 ** max(attempt - 1, 0)
    return timedelta(seconds=retries.backoff.total_seconds() * factor)


def plan_retries(db: MetadataDB, retries: RetriesConfig, now: datetime) -> RetryPlan:
    plan = RetryPlan(due=[], exhausted=[])
    horizon = now - max(_HORIZON, backoff_for(retries, retries.count + 1) * 2)
    for run in db.runs(limit=500, status=[RunStatus.FAILED, RunStatus.INTERRUPTED]):
        if run["origin"] not in {str(o) for o in RETRIED} or not run["finished_at"]:
            continue
        finished = datetime.fromisoformat(str(run["finished_at"]))
        if finished < horizon or db.retries_of(int(run["id"])):
            continue
        attempt = int(run["attempt"] or 1)
        if attempt <= retries.count:
            if finished + backoff_for(retries, attempt) <= now:
                plan.due.append(run)
        elif run["status"] == RunStatus.FAILED:
            plan.exhausted.append((run, attempt))
    return plan


