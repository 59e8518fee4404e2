"""What a monitoring run found wrong, as typed values: policy (alerts, retraining triggers)
matches on the kind and subject, never on the words of the message."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class BreachKind(StrEnum):
    #: A metric on labelled rows crossed `monitoring.performance_floor` (subject: the metric,
    #: `roc_auc`, or the metric in one segment, `roc_auc@origin=JFK`).
    PERFORMANCE = "performance"
    #: A feature's distribution moved past its threshold (subject: the feature, or
    #: `prediction` for the model's output).
    DRIFT = "drift"
    #: A data-quality check failed on the traffic (subject: `<check>:<feature>`, e.g.
    #: `missing:temp`, `unseen:carrier`, `out_of_range:temp`, `contract:distance`).
    QUALITY = "quality"
    #: The window's row count is outside what the reference's cadence leads to expect.
    VOLUME = "volume"


@dataclass(frozen=True)
class Breach:
    kind: BreachKind
    #: For a person: what crossed which line, with the numbers.
    message: str
    #: What crossed it (a feature, a metric, a check): one open alert per (kind, subject).
    subject: str = ""
    #: Numbers behind the message, for the alert's detail and the report.
    detail: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "subject": self.subject, "message": self.message, **(
            {"detail": self.detail} if self.detail else {})}
