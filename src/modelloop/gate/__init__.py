"""The gate: compare a candidate with the champion, decide, record, promote; approve, reject,
roll back."""

from modelloop.gate.policy import (
    SERVES,
    GateDecision,
    Outcome,
    approve,
    decide,
    promote,
    reject,
    run_gate,
)
from modelloop.gate.replay import Replay, replay
from modelloop.gate.rollback import ROLLED_BACK, Rollback, rollback

__all__ = [
    "ROLLED_BACK",
    "SERVES",
    "GateDecision",
    "Outcome",
    "Replay",
    "Rollback",
    "approve",
    "decide",
    "promote",
    "reject",
    "replay",
    "rollback",
    "run_gate",
]
