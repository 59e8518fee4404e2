"""The runtime of `modelloop up`: the project's schedules (APScheduler, embedded), the pipelines
asked for over HTTP, the new-data sensor, and the upkeep of the ledger (runs whose process died,
retries with exponential backoff, the alert when none is left), and the delivery of alert
webhooks from the outbox, in a thread of its own so that a slow receiver never holds it up.

Each pipeline has one worker thread, so within a process a pipeline runs one at a time and a
request that arrives while one is queued joins it; across processes the ledger's leases keep one
running instance. Workers are daemon threads: a stop waits `grace` seconds for a running
pipeline, then records it `interrupted` and lets the process exit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelloop.config import PIPELINES, ProjectConfig
from modelloop.orchestration.alerts import failure_alert
from modelloop.orchestration.ledger import Ledger, Origin, RunRequest, Skipped
from modelloop.orchestration.retries import plan_retries
from modelloop.orchestration.webhooks import deliver_pending
from modelloop.store import MetadataDB
from modelloop.timeutil import cron_trigger

logger = logging.getLogger("modelloop.orchestration")

#: The pipeline runner: (pipeline, request, as-of or None) -> what the run produced.
RunPipeline = Callable[[str, RunRequest, datetime | None], dict[str, Any]]


@dataclass
class _Job:
    request: RunRequest
    as_of: datetime | None


class Runtime:
    def __init__(
        self,
        config: ProjectConfig,
        *,
        run: RunPipeline,
        ledger: Ledger,
        db: MetadataDB,
        sense: Callable[[], Any] | None = None,
        upkeep_every: float | None = None,
    ) -> None:
        self.config = config
        self._run = run
        self._ledger = ledger
        self._db = db
        self._sense = sense
        ttl = config.leases.ttl.total_seconds()
        self._upkeep_every = upkeep_every or max(1.0, min(ttl / 3, 10.0))
        self._queues: dict[str, queue.Queue[_Job | None]] = {p: queue.Queue() for p in PIPELINES}
        self._pending: dict[str, bool] = dict.fromkeys(PIPELINES, False)
        self._running: dict[str, datetime | None] = dict.fromkeys(PIPELINES)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._scheduler: Any = None
        self._delivering: threading.Thread | None = None
        self.started = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        for pipeline in PIPELINES:
            worker = threading.Thread(
                target=self._work, args=(pipeline,), name=f"modelloop-{pipeline}", daemon=True
            )
            worker.start()
            self._workers.append(worker)
        zone = self.config.schedule_timezone
        scheduler = BackgroundScheduler(timezone=zone, daemon=True)
        for pipeline, cron in self.config.schedule.items():
            scheduler.add_job(
                self._scheduled,
                trigger=cron_trigger(cron, zone),
                args=(pipeline, cron),
                id=f"schedule-{pipeline}",
                name=f"{pipeline} on {cron} ({zone})",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=60,
            )
        scheduler.add_job(
            self.upkeep,
            trigger=IntervalTrigger(seconds=self._upkeep_every),
            id="upkeep",
            name="ledger upkeep: dead runs, retries",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        if self._sense is not None and self.config.retraining.min_new_rows is not None:
            scheduler.add_job(
                self._sense_safely,
                trigger=IntervalTrigger(seconds=self.config.retraining.check_every.total_seconds()),
                id="new-data",
                name="new-data sensor",
                max_instances=1,
                coalesce=True,
            )
        scheduler.start()
        self._scheduler = scheduler
        self.started = True
        for job in scheduler.get_jobs():
            logger.info("scheduled: %s, next at %s", job.name, job.next_run_time)

    def stop(self, grace: float = 20.0) -> list[int]:
        """Stop scheduling, let running pipelines finish for up to `grace` seconds, then record
        the ones still running as interrupted. Returns their run ids."""
        self._stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for q in self._queues.values():
            q.put(None)
        deadline = time.monotonic() + grace
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._delivering is not None:  # its attempts are bounded by alerts.timeout
            self._delivering.join(timeout=max(0.0, deadline - time.monotonic()))
        left = self._ledger.interrupt_active("modelloop up was stopped before the run finished")
        if left:
            logger.warning("stopped with run(s) %s unfinished: recorded as interrupted", left)
        return left

    # -- work ----------------------------------------------------------------------------------
    def _scheduled(self, pipeline: str, cron: str) -> None:
        """A schedule fired: one run per fire time, however many processes run the schedule
        (the fire time, to the minute cron counts in, is the run's dedup key)."""
        fired = datetime.now(UTC).replace(second=0, microsecond=0)
        request = RunRequest(
            origin=Origin.SCHEDULE,
            trigger=f"schedule {cron}",
            key=f"schedule {pipeline} {fired.isoformat()}",
        )
        self.submit(pipeline, request)

    def submit(self, pipeline: str, request: RunRequest, as_of: datetime | None = None) -> bool:
        """Queue a run; False when one of this pipeline is already waiting (it joins that one)."""
        if pipeline not in self._queues:
            raise ValueError(f"unknown pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}")
        if self._stopping.is_set():
            return False
        with self._lock:
            if self._pending[pipeline]:
                return False
            self._pending[pipeline] = True
        self._queues[pipeline].put(_Job(request, as_of))
        return True

    def _work(self, pipeline: str) -> None:
        jobs = self._queues[pipeline]
        while True:
            job = jobs.get()
            if job is None or self._stopping.is_set():
                return
            with self._lock:
                self._pending[pipeline] = False
                self._running[pipeline] = datetime.now(UTC)
            logger.info("%s starts (%s)", pipeline, job.request.trigger)
            try:
                produced = self._run(pipeline, job.request, job.as_of)
                logger.info("%s succeeded: %s", pipeline, _summary(produced))
            except Skipped as exc:
                logger.info("%s skipped: %s", pipeline, exc)
            except Exception as exc:  # recorded in the ledger by the run itself
                logger.error("%s failed: %s", pipeline, exc)
            finally:
                with self._lock:
                    self._running[pipeline] = None

    def upkeep(self) -> None:
        """Mark failed the runs whose process died, queue the retries that are due, raise the
        alert for failures with no retry left."""
        if self._stopping.is_set():
            return
        try:
            self._ledger.reap()
            plan = plan_retries(self._db, self.config.retries, datetime.now(UTC).replace(tzinfo=None))
            for run in plan.due:
                request = RunRequest(
                    origin=Origin.RETRY,
                    trigger=f"retry of run {run['id']} (attempt {int(run['attempt']) + 1})",
                    attempt=int(run["attempt"]) + 1,
                    retry_of=int(run["id"]),
                )
                as_of = datetime.fromisoformat(str(run["as_of"])) if run["as_of"] else None
                self.submit(str(run["kind"]), request, as_of)
            for run, attempts in plan.exhausted:
                if failure_alert(self._db, run, attempts, self.config.alerts) is not None:
                    logger.error(
                        "%s failed %d time(s), no retry left: %s", run["kind"], attempts, run["error"]
                    )
        except Exception:
            logger.exception("ledger upkeep failed; it runs again shortly")
        self._deliver_webhooks()

    def _deliver_webhooks(self) -> None:
        """Start sending the due alert webhooks in a thread of their own, unless the last pass
        is still at it: the upkeep never waits on a receiver."""
        if not self.config.alerts.webhooks or self._stopping.is_set():
            return
        with self._lock:
            if self._delivering is not None and self._delivering.is_alive():
                return
            self._delivering = threading.Thread(
                target=self._deliver_once, name="modelloop-webhooks", daemon=True
            )
            self._delivering.start()

    def _deliver_once(self) -> None:
        # A pass ends within about a minute whatever the receivers do; what is left is due on
        # the next tick.
        budget = max(self._upkeep_every, 2 * self.config.alerts.timeout.total_seconds(), 10.0)
        try:
            report = deliver_pending(self._db, self.config.alerts, budget_seconds=min(budget, 60.0))
        except Exception:  # the database, not a receiver: receivers' failures are recorded rows
            logger.exception("webhook delivery failed; it runs again on the next upkeep")
            return
        if report.delivered or report.failed or report.retrying:
            logger.info(
                "webhooks: %d delivered, %d to retry, %d failed",
                report.delivered, report.retrying, report.failed,
            )

    def _sense_safely(self) -> None:
        if self._sense is None or self._stopping.is_set():
            return
        try:
            self._sense()
        except Skipped as exc:
            logger.info("new data: training skipped: %s", exc)
        except Exception as exc:
            logger.error("new-data sensor failed: %s", exc)

    # -- what it is doing ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        jobs = []
        if self._scheduler is not None and not self._stopping.is_set():
            for job in self._scheduler.get_jobs():
                jobs.append(
                    {
                        "id": job.id,
                        "name": job.name,
                        "next_run_at": job.next_run_time.isoformat() if job.next_run_time else None,
                    }
                )
        with self._lock:
            return {
                "jobs": jobs,
                "queued": [p for p, waiting in self._pending.items() if waiting],
                "running": {p: t.isoformat() for p, t in self._running.items() if t is not None},
                "stopping": self._stopping.is_set(),
            }


def _summary(produced: dict[str, Any]) -> str:
    keys = ("note", "version", "decision", "n_rows", "n_labelled", "breach_kinds", "rows")
    shown = {k: produced[k] for k in keys if produced.get(k) not in (None, [], {})}
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "done"
