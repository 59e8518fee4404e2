"""The gate: compare a candidate with the champion, decide, record, promote."""

from modelloop.gate.policy import GateDecision, decide, promote, run_gate

__all__ = ["GateDecision", "decide", "promote", "run_gate"]
