"""The champion's history: every move of the alias, by modelloop or from outside it.

The registry's alias is the truth. modelloop records each move it makes (a promotion, a
rollback) in `modelloop.db`; a move made elsewhere (the MLflow UI, a client) is found by
`reconcile` at the next modelloop operation or server reload, recorded as `external`, and the
tags and `previous` are brought in line with it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from modelloop.errors import NotFound
from modelloop.registry import STATUS_TAG, Registry, VersionStatus
from modelloop.store import MetadataDB

EXTERNAL_BY = "outside modelloop"


def record_move(
    db: MetadataDB, version: int, from_version: int | None, *, action: str, by: str, reason: str
) -> None:
    """A move of `champion` modelloop made (and of `previous`, to the version it replaced)."""
    db.record_alias("champion", version, from_version=from_version, action=action, by=by,
                    reason=reason)


def reconcile(registry: Registry, db: MetadataDB, name: str) -> dict[str, Any] | None:
    """Record a move of `champion` made outside modelloop, and fix tags and `previous` to match.

    Returns the move recorded, or None when the history already agrees with the registry.
    Registry errors propagate: a history that cannot be checked is not silently trusted.
    """
    champion = registry.alias(name, "champion")
    current = champion.version if champion is not None else None
    recorded = db.alias_history("champion", limit=1)
    last = recorded[0]["version"] if recorded else None
    if current == last:
        return None
    if not recorded:
        # No history yet (a project older than it): take the registry as the starting point.
        db.record_alias("champion", current, from_version=None, action="found", by="modelloop",
                        reason="the alias as the registry held it when history began",
                        source="existing")
        return None
    reason = f"champion moved from version {last} to {current} outside modelloop"
    db.record_alias("champion", current, from_version=last, action="moved", by=EXTERNAL_BY,
                    reason=reason, source="external")
    if current is not None:
        registry.set_tags(name, current, {STATUS_TAG: VersionStatus.CHAMPION})
    if last is not None and last != current:
        # The old version may have been deleted outside modelloop too: then nothing to fix.
        with contextlib.suppress(NotFound):
            registry.set_tags(name, last, {STATUS_TAG: VersionStatus.RETIRED})
            registry.set_alias(name, "previous", last)
    return {"version": current, "from_version": last, "reason": reason}


def events(db: MetadataDB, limit: int = 200) -> list[dict[str, Any]]:
    """Every gate decision, approval, rejection, forced promotion, rollback and move of the
    champion made outside modelloop, newest first: `at, action, version, from_version, by,
    reason`, the evidence and the data as-of. `from_version` is the champion the decision was
    judged against (for a rollback, the version rolled back from)."""
    found: list[dict[str, Any]] = []
    for decision in db.decisions(limit=limit):
        metrics = decision["metrics"] or {}
        rolled = decision["outcome"] == "rolled_back"
        found.append(
            {
                "at": decision["created_at"],
                "action": decision["outcome"],
                "version": decision["version"],
                "from_version": metrics.get("from_version") if rolled else metrics.get("champion_version"),
                "by": metrics.get("by", "gate"),
                "reason": "; ".join(decision["reasons"]),
                "evidence": metrics.get("evidence") if rolled else metrics,
                "as_of": decision["as_of"],
            }
        )
    for move in db.alias_history("champion", limit=limit):
        if move["source"] == "external":
            found.append(
                {
                    "at": move["created_at"],
                    "action": "moved_outside_modelloop",
                    "version": move["version"],
                    "from_version": move["from_version"],
                    "by": move["by"],
                    "reason": move["reason"],
                    "evidence": None,
                    "as_of": None,
                }
            )
    found.sort(key=lambda e: str(e["at"]), reverse=True)
    return found[:limit]
