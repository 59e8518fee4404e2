"""One-step rollback: the champion goes back to the version it replaced, with the reason kept.

The same operation whoever asks: a person (`modelloop rollback`), or the server when a version
just swapped in breaches its guardrails during the bake. It moves the registry's aliases (so
every server that follows `champion` follows it back), retires the version it replaced, and
records the rollback beside the gate's decisions, with its evidence. Afterwards `previous` is
the version just replaced, so a second rollback undoes the first; `to` picks another version.
It never goes through the gate's holdout: a rollback restores what served before.

Registry errors are errors: a rollback that cannot read the aliases changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelloop.errors import ModelloopError
from modelloop.gate.history import record_move
from modelloop.registry import STATUS_TAG, Registry, VersionStatus
from modelloop.store import MetadataDB

#: The outcome a rollback is recorded under, beside the gate's "promoted" and "rejected".
ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class Rollback:
    """What a rollback did, and why."""

    from_version: int
    to_version: int
    reason: str
    by: str
    evidence: dict[str, Any] = field(default_factory=dict)
    decision_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollback(
    registry: Registry,
    db: MetadataDB,
    name: str,
    *,
    reason: str,
    by: str,
    evidence: Mapping[str, Any] | None = None,
    expected_champion: int | None = None,
    to: int | None = None,
) -> Rollback:
    """Make `previous` (or version `to`) the champion and retire the current champion.

    `expected_champion`: roll back only if that version is still the champion (a server that
    judged version 7 must not roll back version 8, promoted meanwhile).

    Raises:
        ModelloopError: there is no champion, no previous version, or the champion moved.
        NotFound: version `to` does not exist.
    """
    if not reason.strip():
        raise ModelloopError("a rollback needs a reason (it is kept with the decision)")
    champion = registry.alias(name, "champion")
    if champion is None:
        raise ModelloopError(f"{name!r} has no champion: there is nothing to roll back")
    if expected_champion is not None and champion.version != expected_champion:
        raise ModelloopError(
            f"version {expected_champion} is no longer the champion of {name!r} "
            f"(version {champion.version} is): nothing was rolled back"
        )
    previous = registry.get_version(name, to) if to is not None else registry.alias(name, "previous")
    if previous is None or previous.version == champion.version:
        raise ModelloopError(
            f"{name!r} has no previous version to roll back to (champion is version "
            f"{champion.version}); pass --to VERSION, or promote one with `modelloop gate VERSION`"
            if to is None
            else f"version {to} is already the champion of {name!r}"
        )
    registry.set_alias(name, "champion", previous.version)
    registry.set_tags(name, previous.version, {STATUS_TAG: VersionStatus.CHAMPION})
    registry.set_alias(name, "previous", champion.version)  # a second rollback undoes this one
    challenger = registry.alias(name, "challenger")
    if challenger is not None and challenger.version == previous.version:
        registry.delete_alias(name, "challenger")
    when = datetime.now(UTC).replace(tzinfo=None)
    registry.set_tags(
        name,
        champion.version,
        {
            STATUS_TAG: VersionStatus.RETIRED,
            "modelloop.rollback.reason": reason[:4900],
            "modelloop.rollback.by": by[:250],
            "modelloop.rollback.at": when.isoformat(timespec="seconds"),
        },
    )
    # What MLflow's UI shows beside the version; its gate decision stays in its tags.
    line = f"rolled back by {by} on {when:%Y-%m-%d}: {reason} (v{previous.version} serves again)"
    registry.set_description(name, champion.version, line if len(line) <= 500 else line[:497] + "...")
    evidence = dict(evidence or {})
    record_move(db, previous.version, champion.version, action=ROLLED_BACK, by=by, reason=reason)
    decision_id = db.record_decision(
        previous.version,
        outcome=ROLLED_BACK,
        reasons=[f"rolled back from version {champion.version}: {reason}"],
        metrics={
            "from_version": champion.version,
            "to_version": previous.version,
            "by": by,
            "evidence": evidence,
        },
        as_of=None,
    )
    try:
        registry.write_json(
            name,
            previous.version,
            f"gate/decision-{decision_id}.json",
            {"id": decision_id, "version": previous.version, "outcome": ROLLED_BACK,
             "from_version": champion.version, "by": by, "reason": reason, "evidence": evidence},
        )
    except Exception as exc:  # the rollback is done and recorded in modelloop.db; say so, go on
        logging.getLogger("modelloop.gate").warning(
            "rolled back, but the evidence could not be attached to version %s in the registry: %s",
            previous.version, exc,
        )
    return Rollback(champion.version, previous.version, reason, by, evidence, decision_id)
