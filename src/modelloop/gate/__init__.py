"""The gate: compare a candidate with the champion, decide, record, promote; roll back."""

from modelloop.gate.policy import GateDecision, decide, promote, run_gate
from modelloop.gate.rollback import ROLLED_BACK, Rollback, rollback

__all__ = ["ROLLED_BACK", "GateDecision", "Rollback", "decide", "promote", "rollback", "run_gate"]
