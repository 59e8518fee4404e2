"""What a monitoring run found wrong, as typed values: policy (alerts, retraining triggers)
matches on the kind, never on the words of the message."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreachKind(StrEnum):
    #: The primary metric on labelled rows crossed `monitoring.performance_floor`.
    PERFORMANCE = "performance"
    #: More than `monitoring.drift_share` of the counted features drifted.
    DRIFT = "drift"


@dataclass(frozen=True)
class Breach:
    kind: BreachKind
    #: For a person: what crossed which line, with the numbers.
    message: str

    def __str__(self) -> str:
        return self.message
