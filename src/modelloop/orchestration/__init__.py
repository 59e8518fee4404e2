"""Orchestration: the run ledger with its leases, the policy that opens and closes alerts and
fires retraining, and which failed runs are retried. The scheduler that runs pipelines by
themselves (`modelloop up`) is built on these."""

from modelloop.orchestration.ledger import (
    RETRIED,
    SKIPPED_EXIT_CODE,
    Interrupted,
    Ledger,
    Origin,
    RunRecord,
    RunRequest,
    RunStatus,
    Skipped,
    describe_run,
    holder_gone,
    holder_id,
)
from modelloop.orchestration.policy import (
    AlertChanges,
    AlertKind,
    Trigger,
    TriggerKind,
    apply_alerts,
    judge_trigger,
)
from modelloop.orchestration.retries import RetryPlan, backoff_for, plan_retries

__all__ = [
    "RETRIED",
    "SKIPPED_EXIT_CODE",
    "AlertChanges",
    "AlertKind",
    "Interrupted",
    "Ledger",
    "Origin",
    "RetryPlan",
    "RunRecord",
    "RunRequest",
    "RunStatus",
    "Skipped",
    "Trigger",
    "TriggerKind",
    "apply_alerts",
    "backoff_for",
    "describe_run",
    "holder_gone",
    "holder_id",
    "judge_trigger",
    "plan_retries",
]
