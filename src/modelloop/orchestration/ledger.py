"""The run ledger: every pipeline run, whoever started it, with one running instance per pipeline
across processes and machines that share the metadata database.

A run takes its pipeline's lease (a row with an expiry, renewed by a thread while it runs). A
second attempt while the lease is held is recorded as `skipped`, naming the holder. A run whose
process died stops renewing: once its lease expires (at once, when the holder was a process on
this machine that is gone) the run is marked `failed`, and the next taker says so.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from modelloop.errors import ModelloopError
from modelloop.store import DuplicateRun, MetadataDB


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


class Origin(StrEnum):
    """Who started a run."""

    CLI = "cli"  # a person typed the command
    SCHEDULE = "schedule"  # the project file's schedule, under `modelloop up`
    API = "api"  # POST /pipelines/{pipeline}
    TRIGGER = "trigger"  # an alert or new data, judged by the trigger policy
    RETRY = "retry"  # a failed run tried again
    AIRFLOW = "airflow"  # a task of an exported DAG


#: Runs `modelloop up` tries again when they fail: not a person's command (they saw the error) and
#: not Airflow's (Airflow retries its own tasks).
RETRIED = frozenset({Origin.SCHEDULE, Origin.API, Origin.TRIGGER, Origin.RETRY})

#: A process that exits with this code was skipped (its pipeline was running elsewhere); an
#: exported Airflow task maps it to "skipped" rather than "failed".
SKIPPED_EXIT_CODE = 75


class Skipped(ModelloopError):
    """The pipeline is already running elsewhere: this attempt is recorded as skipped."""

    exit_code = SKIPPED_EXIT_CODE

    def __init__(self, message: str, *, run_id: int, holder: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.holder = dict(holder)


class Interrupted(BaseException):
    """Raised inside a run whose process is stopping (SIGTERM): recorded as interrupted."""


_TOKEN = uuid.uuid4().hex[:8]


def holder_id() -> str:
    """This process, as a lease names it: host, pid and a token for this process's life."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def holder_gone(holder: str) -> bool:
    """True when `holder` was a process on this machine that no longer exists (or is not the
    same process: its pid was reused). A holder on another machine is judged by expiry alone."""
    host, _, rest = holder.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return token != _TOKEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class RunRequest:
    """Who asks for a run and why: the ledger records it beside the run."""

    origin: Origin = Origin.CLI
    #: The reason, in words: "manual", "schedule 0 6 * * *", "monitoring alert at ...".
    trigger: str = "manual"
    attempt: int = 1
    retry_of: int | None = None
    #: The same key twice (a schedule's fire time seen by two processes, one trigger condition)
    #: is one run: the second is recorded as skipped.
    key: str | None = None


@dataclass
class RunRecord:
    """The run in progress: what it produced goes into `produced` (version, decision, report...)."""

    id: int
    pipeline: str
    produced: dict[str, Any] = field(default_factory=dict)
    #: A run that found nothing to do says why here; it still succeeds.
    note: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Ledger:
    """Runs recorded in the metadata database, one at a time per pipeline.

    `on_failed(run)` is called for every run this ledger marks failed because its process died
    (so a candidate registered by a dead training run can be tagged as such).
    """

    def __init__(
        self,
        db: MetadataDB,
        *,
        ttl: float,
        on_failed: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.holder = holder_id()
        self._on_failed = on_failed
        #: Runs this process holds now: run id -> pipeline.
        self._active: dict[int, str] = {}
        self._active_lock = threading.Lock()

    def active(self) -> dict[int, str]:
        with self._active_lock:
            return dict(self._active)

    def interrupt_active(self, reason: str) -> list[int]:
        """Mark every run this process holds `interrupted` and give up its lease (the process is
        stopping and will not wait for them); a candidate a training registered is failed."""
        done = []
        for run_id, pipeline in self.active().items():
            closed = self.db.finish_run(
                run_id,
                status=RunStatus.INTERRUPTED,
                detail={"interrupted": True},
                error=f"interrupted: {reason}",
                only_if_running=True,
            )
            self.db.release_lease(pipeline, holder=self.holder, run_id=run_id)
            if closed:
                done.append(run_id)
                if self._on_failed is not None:
                    self._on_failed(self.db.get_run(run_id))
        return done

    @contextmanager
    def run(
        self,
        pipeline: str,
        request: RunRequest,
        *,
        as_of: datetime | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Iterator[RunRecord]:
        """Record the run, hold the pipeline's lease while the body runs, close the run with its
        outcome. Raises `Skipped` (recorded) when the pipeline runs elsewhere."""
        record_params = dict(params or {})
        try:
            run_id = self.db.start_run(
                pipeline,
                as_of=as_of,
                trigger=request.trigger,
                origin=str(request.origin),
                params=record_params,
                attempt=request.attempt,
                retry_of=request.retry_of,
                holder=self.holder,
                dedup_key=request.key,
            )
        except DuplicateRun as exc:
            first, holder = exc.run.get("id"), exc.run.get("holder")
            skipped = self.db.start_run(
                pipeline,
                as_of=as_of,
                trigger=request.trigger,
                origin=str(request.origin),
                params=record_params,
                holder=self.holder,
            )
            raise self._skip(
                skipped,
                f"{pipeline} for {request.key} was already started by run {first}",
                error=f"already run for {request.key} by run {first} ({holder})",
                detail={"same_as": first, "key": request.key},
                holder={"run_id": first, "holder": holder},
            ) from None
        held = self._acquire(pipeline, run_id)
        if held is not None:
            where = f"run {held.get('run_id')} ({held['holder']})"
            raise self._skip(
                run_id,
                f"{pipeline} is already running: {where}",
                error=f"{pipeline} was running: {where}",
                detail={"held_by": held.get("run_id"), "holder": held["holder"]},
                holder=held,
            )
        record = RunRecord(id=run_id, pipeline=pipeline)
        with self._active_lock:
            self._active[run_id] = pipeline
        try:
            with self._renewed(pipeline, run_id):
                try:
                    yield record
                except (Interrupted, KeyboardInterrupt) as exc:
                    why = f"interrupted: {exc or 'the process stopped'}"
                    self._close(record, RunStatus.INTERRUPTED, why)
                    raise
                except BaseException as exc:
                    error = str(exc) if isinstance(exc, ModelloopError) else repr(exc)
                    self._close(record, RunStatus.FAILED, error, getattr(exc, "report", None))
                    raise
                else:
                    self._close(record, RunStatus.SUCCEEDED, None)
        finally:
            with self._active_lock:
                self._active.pop(run_id, None)

    def _skip(
        self,
        run_id: int,
        why: str,
        *,
        error: str,
        detail: Mapping[str, Any],
        holder: Mapping[str, Any],
    ) -> Skipped:
        """Close run `run_id` as skipped; the exception to raise for it."""
        self.db.finish_run(run_id, status=RunStatus.SKIPPED, detail=detail, error=error)
        return Skipped(f"{why}; this attempt is recorded as skipped", run_id=run_id, holder=holder)

    @contextmanager
    def _renewed(self, lease: str, run_id: int) -> Iterator[None]:
        """Renew the lease `lease` (taken) every ttl/3 while the body runs, then give it up."""
        stop, lost = threading.Event(), threading.Event()
        beat = threading.Thread(
            target=self._renew, args=(lease, run_id, stop, lost), name=f"modelloop-lease-{lease}",
            daemon=True,
        )
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join(timeout=5)
            self.db.release_lease(lease, holder=self.holder, run_id=run_id)
            if lost.is_set():
                logging.getLogger("modelloop.orchestration").error(
                    "%s (run %s) lost its lease while it ran (the database was unreachable for "
                    "longer than leases.ttl); another process may have run it too",
                    lease,
                    run_id,
                )

    @contextmanager
    def hold(self, name: str, *, wait: float = 120.0) -> Iterator[None]:
        """A lock across processes (a lease row named `lock:<name>`), waited for rather than
        skipped: promotions, approvals and rollbacks of one model run one at a time."""
        lock = f"lock:{name}"
        deadline = time.monotonic() + wait
        pause = 0.02
        while True:
            lease = self.db.lease(lock)
            if lease is None or self._stale(lease):
                if self.db.take_lease(lock, holder=self.holder, run_id=0, ttl=self.ttl, replacing=lease):
                    break
            elif time.monotonic() > deadline:
                raise ModelloopError(
                    f"waited {wait:.0f} s for {name} held by {lease['holder']}; try again shortly"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        with self._renewed(lock, 0):
            yield

    def _close(
        self,
        record: RunRecord,
        status: RunStatus,
        error: str | None,
        report: Mapping[str, Any] | None = None,
    ) -> None:
        detail = dict(record.produced)
        if record.note:
            detail["note"] = record.note
        if report:
            detail["report"] = dict(report)
        # Only a run still running: one interrupted by a stop stays as the stop recorded it.
        self.db.finish_run(record.id, status=status, detail=detail, error=error, only_if_running=True)

    def _renew(
        self, pipeline: str, run_id: int, stop: threading.Event, lost: threading.Event
    ) -> None:
        while not stop.wait(self.ttl / 3):
            try:
                if not self.db.renew_lease(pipeline, holder=self.holder, run_id=run_id, ttl=self.ttl):
                    lost.set()
                    return
            except Exception:  # a database blip: the next beat tries again before expiry
                continue

    def _acquire(self, pipeline: str, run_id: int) -> dict[str, Any] | None:
        """Take the lease; None on success, else the lease that holds it."""
        for _ in range(5):
            lease = self.db.lease(pipeline)
            if lease is not None and not self._stale(lease):
                return lease
            if lease is not None:
                self._fail_dead(lease.get("run_id"), lease)
            taken = self.db.take_lease(
                pipeline, holder=self.holder, run_id=run_id, ttl=self.ttl, replacing=lease
            )
            if taken:
                return None
        lease = self.db.lease(pipeline)
        return lease or {"holder": "unknown", "run_id": None}

    def _stale(self, lease: Mapping[str, Any]) -> bool:
        expires = datetime.fromisoformat(str(lease["expires_at"]))
        return expires < _utcnow() or holder_gone(str(lease["holder"]))

    def _fail_dead(self, run_id: int | None, lease: Mapping[str, Any] | None) -> None:
        if run_id is None:
            return
        why = (
            f"its process ({lease['holder']}) stopped without finishing it (lease expired at "
            f"{lease['expires_at']})"
            if lease
            else "its process stopped without finishing it"
        )
        if self.db.finish_run(
            int(run_id), status=RunStatus.FAILED, detail={"died": True}, error=why, only_if_running=True
        ) and self._on_failed is not None:
            self._on_failed(self.db.get_run(int(run_id)))

    def reap(self) -> list[int]:
        """Mark failed every `running` run whose process is gone or whose lease has expired or
        is another run's; returns their ids."""
        failed = []
        for run in self.db.runs(limit=1000, status=RunStatus.RUNNING):
            if run["holder"] == self.holder:
                continue
            lease = self.db.lease(run["kind"])
            mine = lease is not None and lease.get("run_id") == run["id"]
            if mine and lease is not None and not self._stale(lease):
                continue
            if not mine:
                # Between its start and taking the lease a run has no lease yet: give it a ttl.
                started = datetime.fromisoformat(str(run["started_at"]))
                alive = not holder_gone(str(run["holder"] or ""))
                if alive and (_utcnow() - started).total_seconds() < self.ttl:
                    continue
            self._fail_dead(run["id"], lease if mine else None)
            failed.append(int(run["id"]))
        return failed


def describe_run(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger row as `modelloop runs --json` shows it: what was asked, what happened, what it
    produced (version, decision, report, note...)."""
    detail = row.get("detail") or {}
    return {
        "id": row["id"],
        "pipeline": row["kind"],
        "trigger": row["trigger"],
        "origin": row["origin"],
        "status": row["status"],
        "as_of": row["as_of"],
        "params": row["params"] or {},
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "error": row["error"],
        "attempt": row["attempt"],
        "retry_of": row["retry_of"],
        "holder": row["holder"],
        # A failed run's validation report is in `detail` too; the ledger shows its path only.
        "produced": {k: v for k, v in detail.items() if k != "report" or isinstance(v, str)},
    }
