"""modelloop's own metadata: pipeline runs, gate decisions, monitoring results, alerts, triggers.

SQLAlchemy Core, so the embedded SQLite file and a team's Postgres are one code path. Every row
carries the model name because one database may serve several projects. JSON payloads are
stored as text and returned parsed; datetimes are stored naive and returned as ISO strings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from modelloop.errors import NotFound
from modelloop.timeutil import to_naive

# The server and the CLI write at once: wait for the other writer rather than fail.
_BUSY_TIMEOUT_SECONDS = 30.0

_metadata = sa.MetaData()


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _model() -> sa.Column[str]:
    return sa.Column("model", sa.String(255), nullable=False, index=True)


def _created_at() -> sa.Column[datetime]:
    return sa.Column("created_at", sa.DateTime, nullable=False)


_runs = sa.Table(
    "modelloop_runs",
    _metadata,
    _id(),
    _model(),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=True),
    sa.Column("trigger", sa.Text, nullable=False),
    sa.Column("status", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    _created_at(),
    # Who started the run: cli, schedule, api, trigger, retry or airflow.
    sa.Column("origin", sa.String(32), nullable=False, server_default="cli"),
    sa.Column("params", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("retry_of", sa.Integer, nullable=True),
    sa.Column("holder", sa.String(255), nullable=True),
    sa.Column("dedup_key", sa.String(255), nullable=True),
    sa.Index("ix_modelloop_runs_dedup", "model", "kind", "dedup_key", unique=True),
)
_leases = sa.Table(
    "modelloop_leases",
    _metadata,
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("pipeline", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("acquired_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
)
_decisions = sa.Table(
    "modelloop_decisions",
    _metadata,
    _id(),
    _model(),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(64), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=True),
    _created_at(),
)
_monitoring = sa.Table(
    "modelloop_monitoring",
    _metadata,
    _id(),
    _model(),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    _created_at(),
)
_alerts = sa.Table(
    "modelloop_alerts",
    _metadata,
    _id(),
    _model(),
    sa.Column("kind", sa.String(255), nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("resolved_as_of", sa.DateTime, nullable=True),
    _created_at(),
    # What breached: a feature, a metric, a check; "" for the per-kind alerts made before 0004.
    sa.Column("subject", sa.String(255), nullable=False, server_default=""),
    sa.Column("last_seen_as_of", sa.DateTime, nullable=True),
    # Monitoring runs, each at a later as-of than the last, that found the condition.
    sa.Column("seen", sa.Integer, nullable=False, server_default="1"),
    sa.Column("acked_at", sa.DateTime, nullable=True),
    sa.Column("acked_by", sa.String(255), nullable=True),
    sa.Column("ack_reason", sa.Text, nullable=True),
    sa.Column("resolved_at", sa.DateTime, nullable=True),
)
#: The outbox of webhook deliveries: a pipeline inserts, a deliverer sends (see
#: modelloop.orchestration.webhooks), so no pipeline waits on a receiver.
_deliveries = sa.Table(
    "modelloop_alert_deliveries",
    _metadata,
    _id(),
    _model(),
    sa.Column("alert_id", sa.Integer, nullable=False, index=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", sa.DateTime, nullable=True),
    _created_at(),
    sa.Index("ix_modelloop_alert_deliveries_due", "status", "next_attempt_at"),
)
_triggers = sa.Table(
    "modelloop_triggers",
    _metadata,
    _id(),
    _model(),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("fired", sa.Boolean, nullable=False),
    _created_at(),
)
_aliases = sa.Table(
    "modelloop_alias_history",
    _metadata,
    _id(),
    _model(),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("by", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    _created_at(),
)
_state = sa.Table(
    "modelloop_state",
    _metadata,
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

class DuplicateRun(Exception):
    """A run with this dedup key exists already (another process started it)."""

    def __init__(self, key: str, run: Mapping[str, Any]) -> None:
        super().__init__(f"a run with key {key!r} exists: run {run.get('id')}")
        self.key = key
        self.run = dict(run)


_JSON_FIELDS = {"detail", "reasons", "metrics", "result", "params"}


class MetadataDB:
    """What the pipelines decided and why, for one model, in any SQLAlchemy database.

    The engine and the tables are created on first use, so constructing one is free. With
    SQLite the file runs in WAL mode with a busy timeout, because the server and the CLI
    write to it at the same time.
    """

    def __init__(self, url: str, model: str) -> None:
        self.url = url
        self.model = model
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    # -- pipeline runs ---------------------------------------------------------------------------

    def start_run(
        self,
        kind: str,
        *,
        as_of: datetime | None,
        trigger: str,
        origin: str = "cli",
        params: Mapping[str, Any] | None = None,
        attempt: int = 1,
        retry_of: int | None = None,
        holder: str | None = None,
        status: str = "running",
        dedup_key: str | None = None,
    ) -> int:
        """Record a pipeline run (`running` unless told); `finish_run` closes it. A `dedup_key`
        another run of this pipeline already has raises `DuplicateRun` naming that run."""
        now = _now()
        try:
            return self._start_run(
                kind=kind,
                as_of=_naive(as_of),
                trigger=trigger,
                status=status,
                detail=None,
                started_at=now,
                finished_at=None if status == "running" else now,
                created_at=now,
                origin=origin,
                params=_dumps(dict(params or {})),
                error=None,
                attempt=attempt,
                retry_of=retry_of,
                holder=holder,
                dedup_key=dedup_key,
            )
        except sa.exc.IntegrityError:
            if dedup_key is None:
                raise
            found = self._select(
                _runs, where=[_runs.c.kind == kind, _runs.c.dedup_key == dedup_key], limit=1
            )
            raise DuplicateRun(dedup_key, found[0] if found else {}) from None

    def _start_run(self, **values: Any) -> int:
        return self._insert(_runs, **values)

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        detail: Mapping[str, Any],
        error: str | None = None,
        only_if_running: bool = False,
    ) -> bool:
        """Close a run with its outcome and evidence; with `only_if_running`, a run another
        process already closed is left as it is (returns False)."""
        where = [_runs.c.id == run_id, _runs.c.model == self.model]
        if only_if_running:
            where.append(_runs.c.status == "running")
        statement = (
            _runs.update()
            .where(*where)
            .values(status=status, detail=_dumps(detail), error=error, finished_at=_now())
        )
        with self._connect().begin() as connection:
            updated = connection.execute(statement).rowcount
        if not updated and not only_if_running:
            raise NotFound(f"pipeline run {run_id} of model {self.model!r} does not exist")
        return bool(updated)

    def runs(
        self,
        limit: int = 50,
        *,
        pipeline: str | None = None,
        status: str | Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; one pipeline's, or those in `status`, when given."""
        where: list[sa.ColumnElement[bool]] = []
        if pipeline is not None:
            where.append(_runs.c.kind == pipeline)
        if status is not None:
            where.append(_runs.c.status.in_([status] if isinstance(status, str) else list(status)))
        return self._select(_runs, where=where, order=[_runs.c.id.desc()], limit=limit)

    def get_run(self, run_id: int) -> dict[str, Any]:
        found = self._select(_runs, where=[_runs.c.id == int(run_id)], limit=1)
        if not found:
            raise NotFound(f"pipeline run {run_id} of model {self.model!r} does not exist")
        return found[0]

    def retries_of(self, run_id: int) -> list[dict[str, Any]]:
        """The runs started as retries of `run_id`, oldest first."""
        return self._select(_runs, where=[_runs.c.retry_of == int(run_id)], order=[_runs.c.id])

    # -- leases ----------------------------------------------------------------------------------

    def lease(self, pipeline: str) -> dict[str, Any] | None:
        """Who holds `pipeline`'s lease, until when (it may have expired), for which run."""
        statement = sa.select(_leases).where(
            _leases.c.model == self.model, _leases.c.pipeline == pipeline
        )
        with self._connect().connect() as connection:
            row = connection.execute(statement).mappings().first()
        return None if row is None else _row(row)

    def take_lease(
        self,
        pipeline: str,
        *,
        holder: str,
        run_id: int,
        ttl: float,
        replacing: Mapping[str, Any] | None,
    ) -> bool:
        """Compare-and-set: take the lease when nobody holds it (`replacing` None) or when it
        is still exactly the lease `replacing` describes (one read before, judged over). Two
        processes racing for it: one wins, on SQLite and PostgreSQL alike."""
        now = _now()
        values = {
            "holder": holder,
            "run_id": run_id,
            "acquired_at": now,
            "expires_at": _after(now, ttl),
        }
        mine = (_leases.c.model == self.model, _leases.c.pipeline == pipeline)
        try:
            with self._connect().begin() as connection:
                if replacing is None:
                    connection.execute(
                        _leases.insert().values(model=self.model, pipeline=pipeline, **values)
                    )
                    return True
                statement = (
                    _leases.update()
                    .where(
                        *mine,
                        _leases.c.holder == replacing["holder"],
                        _leases.c.expires_at == _parse(replacing["expires_at"]),
                    )
                    .values(**values)
                )
                return bool(connection.execute(statement).rowcount)
        except sa.exc.IntegrityError:
            return False  # another process inserted it first

    def renew_lease(self, pipeline: str, *, holder: str, run_id: int, ttl: float) -> bool:
        """Push the expiry on; False when the lease is no longer this holder's."""
        statement = (
            _leases.update()
            .where(
                _leases.c.model == self.model,
                _leases.c.pipeline == pipeline,
                _leases.c.holder == holder,
                _leases.c.run_id == run_id,
            )
            .values(expires_at=_after(_now(), ttl))
        )
        with self._connect().begin() as connection:
            return bool(connection.execute(statement).rowcount)

    def release_lease(self, pipeline: str, *, holder: str, run_id: int) -> None:
        statement = _leases.delete().where(
            _leases.c.model == self.model,
            _leases.c.pipeline == pipeline,
            _leases.c.holder == holder,
            _leases.c.run_id == run_id,
        )
        with self._connect().begin() as connection:
            connection.execute(statement)

    # -- alias history ---------------------------------------------------------------------------

    def record_alias(
        self,
        alias: str,
        version: int | None,
        *,
        from_version: int | None,
        action: str,
        by: str,
        reason: str,
        source: str = "modelloop",
    ) -> int:
        """One move of an alias: who, why, from which version; `source` is `modelloop` or
        `external` (moved in the MLflow UI or by a client, found by reconciling)."""
        return self._insert(
            _aliases,
            alias=alias,
            version=None if version is None else int(version),
            from_version=None if from_version is None else int(from_version),
            action=action,
            source=source,
            by=by[:255],
            reason=reason,
            created_at=_now(),
        )

    def alias_history(self, alias: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Newest first; one alias's moves when `alias` is given."""
        where = [] if alias is None else [_aliases.c.alias == alias]
        return self._select(_aliases, where=where, order=[_aliases.c.id.desc()], limit=limit)

    # -- gate decisions --------------------------------------------------------------------------

    def record_decision(
        self,
        version: int,
        *,
        outcome: str,
        reasons: Sequence[str],
        metrics: Mapping[str, Any],
        as_of: datetime | None,
    ) -> int:
        """Keep the gate's verdict with its evidence: "why is v7 in production?" needs it."""
        return self._insert(
            _decisions,
            version=int(version),
            outcome=outcome,
            reasons=_dumps(list(reasons)),
            metrics=_dumps(metrics),
            as_of=_naive(as_of),
            created_at=_now(),
        )

    def decisions(self, version: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; only one version's when `version` is given."""
        where = [] if version is None else [_decisions.c.version == int(version)]
        return self._select(_decisions, where=where, order=[_decisions.c.id.desc()], limit=limit)

    # -- monitoring ------------------------------------------------------------------------------

    def record_monitoring(self, result: Mapping[str, Any], *, as_of: datetime) -> int:
        """Keep one monitoring run's result (drift, quality, performance) at its as-of time."""
        return self._insert(
            _monitoring, as_of=_naive(as_of), result=_dumps(result), created_at=_now()
        )

    def last_monitoring(self) -> dict[str, Any] | None:
        """The result with the latest as-of (data time, not wall clock), or None."""
        order = [_monitoring.c.as_of.desc(), _monitoring.c.id.desc()]
        found = self._select(_monitoring, order=order, limit=1)
        return found[0] if found else None

    def monitoring_history(self, limit: int = 200) -> list[dict[str, Any]]:
        """The latest `limit` results, oldest first, ready to plot."""
        order = [_monitoring.c.as_of.desc(), _monitoring.c.id.desc()]
        return list(reversed(self._select(_monitoring, order=order, limit=limit)))

    # -- alerts ----------------------------------------------------------------------------------

    def record_alert(
        self, kind: str, *, as_of: datetime, detail: Mapping[str, Any], subject: str = ""
    ) -> int:
        """Open an alert about `subject` (a feature, a metric, a check, a pipeline)."""
        return self._insert(
            _alerts,
            kind=kind,
            subject=subject[:255],
            as_of=_naive(as_of),
            last_seen_as_of=_naive(as_of),
            seen=1,
            detail=_dumps(detail),
            status="open",
            resolved_as_of=None,
            created_at=_now(),
        )

    def get_alert(self, alert_id: int) -> dict[str, Any]:
        found = self._select(_alerts, where=[_alerts.c.id == int(alert_id)], limit=1)
        if not found:
            raise NotFound(
                f"alert {alert_id} of model {self.model!r} does not exist "
                "(`modelloop alerts --status all` lists them)"
            )
        return found[0]

    def open_alerts(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Open alerts (of `kind` when given), oldest first; acknowledged ones are not open."""
        return self.alerts(kind, status="open", limit=None, oldest_first=True)

    def unresolved_alerts(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Open and acknowledged alerts (of `kind` when given), oldest first."""
        return self.alerts(kind, status=("open", "acknowledged"), limit=None, oldest_first=True)

    def alerts(
        self,
        kind: str | None = None,
        limit: int | None = 200,
        *,
        status: str | Sequence[str] | None = None,
        oldest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Alerts (of `kind`, in `status` when given), newest first unless `oldest_first`."""
        where: list[sa.ColumnElement[bool]] = []
        if kind is not None:
            where.append(_alerts.c.kind == kind)
        if status is not None:
            where.append(_alerts.c.status.in_([status] if isinstance(status, str) else list(status)))
        order = [_alerts.c.as_of, _alerts.c.id] if oldest_first else [_alerts.c.id.desc()]
        return self._select(_alerts, where=where, order=order, limit=limit)

    def alert_counts(self) -> dict[str, dict[str, int]]:
        """How many open and acknowledged alerts there are, by status then kind."""
        statement = (
            sa.select(_alerts.c.status, _alerts.c.kind, sa.func.count())
            .where(_alerts.c.model == self.model, _alerts.c.status.in_(("open", "acknowledged")))
            .group_by(_alerts.c.status, _alerts.c.kind)
        )
        counts: dict[str, dict[str, int]] = {"open": {}, "acknowledged": {}}
        with self._connect().connect() as connection:
            for status, kind, count in connection.execute(statement):
                counts[str(status)][str(kind)] = int(count)
        return counts

    def last_resolved_as_of(self, kind: str, subject: str) -> datetime | None:
        """The latest as-of at which an alert of (kind, subject) was judged clean, or None."""
        statement = sa.select(sa.func.max(_alerts.c.resolved_as_of)).where(
            _alerts.c.model == self.model,
            _alerts.c.kind == kind,
            _alerts.c.subject == subject,
            _alerts.c.status == "resolved",
        )
        with self._connect().connect() as connection:
            found = connection.execute(statement).scalar_one_or_none()
        return None if found is None else _parse(found)

    def see_alert(self, alert_id: int, *, as_of: datetime) -> bool:
        """A run at `as_of` found the alert's condition again: counted once per later as-of, so
        re-running monitoring changes nothing. False when `as_of` is not later than the last."""
        moment = _naive(as_of)
        seen_until = sa.func.coalesce(_alerts.c.last_seen_as_of, _alerts.c.as_of)
        statement = (
            _alerts.update()
            .where(_alerts.c.model == self.model, _alerts.c.id == int(alert_id), seen_until < moment)
            .values(last_seen_as_of=moment, seen=_alerts.c.seen + 1)
        )
        with self._connect().begin() as connection:
            return bool(connection.execute(statement).rowcount)

    def resolve_alert(self, alert_id: int, *, as_of: datetime) -> bool:
        """Close one alert judged clean at `as_of`, unless it was raised later than that or is
        closed already."""
        statement = (
            _alerts.update()
            .where(
                _alerts.c.model == self.model,
                _alerts.c.id == int(alert_id),
                _alerts.c.status.in_(("open", "acknowledged")),
                _alerts.c.as_of <= _naive(as_of),
            )
            .values(status="resolved", resolved_as_of=_naive(as_of), resolved_at=_now())
        )
        with self._connect().begin() as connection:
            return bool(connection.execute(statement).rowcount)

    def ack_alert(self, alert_id: int, *, by: str, reason: str) -> bool:
        """Mark an open alert acknowledged (a person looks into it); False when it is not open."""
        statement = (
            _alerts.update()
            .where(
                _alerts.c.model == self.model,
                _alerts.c.id == int(alert_id),
                _alerts.c.status == "open",
            )
            .values(status="acknowledged", acked_at=_now(), acked_by=by[:255], ack_reason=reason)
        )
        with self._connect().begin() as connection:
            return bool(connection.execute(statement).rowcount)

    def resolve_alerts(self, kind: str, *, as_of: datetime) -> int:
        """Close the open alerts of `kind` raised at or before `as_of` (a run at an earlier
        as-of never closes a later alert); returns how many were closed."""
        statement = (
            _alerts.update()
            .where(
                _alerts.c.model == self.model,
                _alerts.c.kind == kind,
                _alerts.c.status.in_(("open", "acknowledged")),
                _alerts.c.as_of <= _naive(as_of),
            )
            .values(status="resolved", resolved_as_of=_naive(as_of), resolved_at=_now())
        )
        with self._connect().begin() as connection:
            return int(connection.execute(statement).rowcount)

    # -- webhook deliveries (the outbox) ---------------------------------------------------------

    def enqueue_delivery(self, alert_id: int, *, event: str, url: str, payload: str) -> int:
        """Queue one event for one receiver, due now; `payload` is the exact body to send."""
        now = _now()
        return self._insert(
            _deliveries,
            alert_id=int(alert_id),
            event=event,
            url=url,
            payload=payload,
            attempts=0,
            next_attempt_at=now,
            status="pending",
            last_error=None,
            delivered_at=None,
            created_at=now,
        )

    def due_deliveries(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Pending deliveries whose next attempt is due at `now` (UTC), oldest first."""
        return self._select(
            _deliveries,
            where=[_deliveries.c.status == "pending", _deliveries.c.next_attempt_at <= _naive(now)],
            order=[_deliveries.c.next_attempt_at, _deliveries.c.id],
            limit=limit,
        )

    def claim_delivery(
        self, delivery_id: int, *, attempts: int, now: datetime, hold_until: datetime
    ) -> bool:
        """Compare-and-set: take a due delivery for one attempt by pushing its next attempt to
        `hold_until`, so another deliverer (the server, a CLI) skips it meanwhile. False when
        someone else took or finished it since it was read."""
        statement = (
            _deliveries.update()
            .where(
                _deliveries.c.model == self.model,
                _deliveries.c.id == int(delivery_id),
                _deliveries.c.status == "pending",
                _deliveries.c.attempts == int(attempts),
                _deliveries.c.next_attempt_at <= _naive(now),
            )
            .values(next_attempt_at=_naive(hold_until))
        )
        with self._connect().begin() as connection:
            return bool(connection.execute(statement).rowcount)

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        status: str,
        attempts: int,
        next_attempt_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        """Record an attempt: `delivered`, `failed` (no attempt left), or `pending` again at
        `next_attempt_at`."""
        values: dict[str, Any] = {"status": status, "attempts": int(attempts), "last_error": error}
        if next_attempt_at is not None:
            values["next_attempt_at"] = _naive(next_attempt_at)
        if status == "delivered":
            values["delivered_at"] = _now()
        statement = (
            _deliveries.update()
            .where(_deliveries.c.model == self.model, _deliveries.c.id == int(delivery_id))
            .values(**values)
        )
        with self._connect().begin() as connection:
            connection.execute(statement)

    def deliveries(
        self, *, alert_id: int | None = None, status: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Webhook deliveries (of one alert, in one status when given), newest first."""
        where: list[sa.ColumnElement[bool]] = []
        if alert_id is not None:
            where.append(_deliveries.c.alert_id == int(alert_id))
        if status is not None:
            where.append(_deliveries.c.status == status)
        return self._select(_deliveries, where=where, order=[_deliveries.c.id.desc()], limit=limit)

    # -- retraining triggers ---------------------------------------------------------------------

    def record_trigger(
        self, reason: str, *, as_of: datetime, detail: Mapping[str, Any], fired: bool
    ) -> int:
        """Keep every trigger evaluation, fired or held back (by cooldown, say), with why."""
        return self._insert(
            _triggers,
            reason=reason,
            as_of=_naive(as_of),
            detail=_dumps(detail),
            fired=bool(fired),
            created_at=_now(),
        )

    def last_fired_trigger(self) -> dict[str, Any] | None:
        """The fired trigger with the latest as-of: where the retraining cooldown counts from."""
        found = self._select(
            _triggers,
            where=[_triggers.c.fired.is_(True)],
            order=[_triggers.c.as_of.desc(), _triggers.c.id.desc()],
            limit=1,
        )
        return found[0] if found else None

    # -- small state -----------------------------------------------------------------------------

    def get_state(self, key: str) -> Any | None:
        """A JSON value set by `set_state`, or None."""
        statement = sa.select(_state.c.value).where(
            _state.c.model == self.model, _state.c.key == key
        )
        with self._connect().connect() as connection:
            value = connection.execute(statement).scalar_one_or_none()
        return None if value is None else json.loads(value)

    def set_state(self, key: str, value: Any) -> None:
        """Insert or replace a JSON value."""
        text = _dumps(value)
        mine = (_state.c.model == self.model, _state.c.key == key)
        for attempt in range(2):
            try:
                with self._connect().begin() as connection:
                    # Update first: in SQLite the write lock is taken before anything is read.
                    updated = connection.execute(
                        _state.update().where(*mine).values(value=text, updated_at=_now())
                    ).rowcount
                    if not updated:
                        connection.execute(
                            _state.insert().values(
                                model=self.model, key=key, value=text, updated_at=_now()
                            )
                        )
                return
            except sa.exc.IntegrityError:
                if attempt:  # another writer inserted the key between our update and insert
                    raise

    def delete_state(self, key: str) -> None:
        """Remove a value set by `set_state` (absent already: nothing to do)."""
        with self._connect().begin() as connection:
            connection.execute(
                _state.delete().where(_state.c.model == self.model, _state.c.key == key)
            )

    # -- plumbing --------------------------------------------------------------------------------

    def _connect(self) -> Engine:
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    engine = _create_engine(self.url)
                    _create_tables(engine)
                    self._engine = engine
        return self._engine

    def _insert(self, table: sa.Table, **values: Any) -> int:
        with self._connect().begin() as connection:
            result = connection.execute(table.insert().values(model=self.model, **values))
            key = result.inserted_primary_key
        if key is None:  # pragma: no cover - every table here has an integer key
            raise RuntimeError(f"{table.name}: the database returned no id")
        return int(key[0])

    def _select(
        self,
        table: sa.Table,
        *,
        where: Iterable[sa.ColumnElement[bool]] = (),
        order: Iterable[sa.ColumnElement[Any]] = (),
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        statement = sa.select(table).where(table.c.model == self.model, *where).order_by(*order)
        if limit is not None:
            statement = statement.limit(limit)
        with self._connect().connect() as connection:
            rows = connection.execute(statement).mappings().all()
        return [_row(row) for row in rows]


def _create_engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    connect_args: dict[str, Any] = {"timeout": _BUSY_TIMEOUT_SECONDS}
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        # One shared connection, or every connection would see its own empty database.
        connect_args["check_same_thread"] = False
        engine = sa.create_engine(parsed, connect_args=connect_args, poolclass=StaticPool)
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args=connect_args)
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_SECONDS * 1000)}")
        # Readers never block the writer, and the writer never blocks readers.
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


#: The revision a database made before migrations existed is at (its tables were created directly).
_FIRST_REVISION = "0001"


def _create_tables(engine: Engine) -> None:
    """Bring the database to the newest migration (alembic), once per process and engine.

    Another process may migrate at the same moment: a failed attempt is retried after a pause,
    and the retry finds the work done.
    """
    for attempt in range(8):
        try:
            _migrate(engine)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
            if attempt == 7:
                raise
            time.sleep(0.05 * (attempt + 1))


#: Alembic keeps its running environment in module globals: one migration at a time per process.
_MIGRATING = threading.Lock()


#: The newest migration (tests/store check it is alembic's head): a database already there is
#: opened without importing alembic, which costs a tenth of a second on every command.
HEAD_REVISION = "0004"


def _at_head(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            found = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError:  # no such table yet: a new or a pre-migrations database
        return False
    return [row[0] for row in found] == [HEAD_REVISION]


def schema_revision(url: str) -> str | None:
    """The migration revision the database at `url` is at, read without migrating it: None for
    a database modelloop has not written yet."""
    engine = _create_engine(url)
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            if "alembic_version" not in tables:
                return _FIRST_REVISION if "modelloop_runs" in tables else None
            found = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    return ",".join(sorted(str(row[0]) for row in found)) or None


def _migrate(engine: Engine) -> None:
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "modelloop.store:migrations")
    with _MIGRATING, engine.begin() as connection:
        config.attributes["connection"] = connection
        tables = set(sa.inspect(connection).get_table_names())
        if "alembic_version" not in tables and "modelloop_runs" in tables:
            command.stamp(config, _FIRST_REVISION)  # made by create_all, before migrations
        command.upgrade(config, "head")


def _row(row: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _JSON_FIELDS and isinstance(value, str):
            out[key] = json.loads(value)
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays keep their numbers; dates become ISO; anything else its str."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    for method in ("item", "tolist"):
        convert = getattr(value, method, None)
        if callable(convert):
            try:
                return convert()
            except (TypeError, ValueError):
                break
    return str(value)


def _naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    naive = to_naive(value)
    # A pandas Timestamp is a datetime, but the drivers want the plain type.
    return datetime(
        naive.year,
        naive.month,
        naive.day,
        naive.hour,
        naive.minute,
        naive.second,
        naive.microsecond,
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _after(moment: datetime, seconds: float) -> datetime:
    from datetime import timedelta

    return moment + timedelta(seconds=seconds)


def _parse(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
