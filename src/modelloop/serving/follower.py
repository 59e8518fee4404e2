"""Hot swap: the server follows the registry's `champion` alias, whoever moves it.

Every `serving.reload_interval` (and on `POST /admin/reload`) the follower reads the alias; when
it names another version, that version is loaded and warmed on a worker thread while the old
one keeps answering, then swapped in with one assignment (`ModelHolder.swap`): no request fails
or waits on a load. A version that fails to load is retried with a growing pause, and the old
one keeps serving meanwhile.

After a swap the version it replaced stays loaded for `serving.bake`. `Bake` watches the new
version's answers against the old one's: if it fails more (5xx only: a 4xx is the client's
mistake, so a hostile client cannot force a rollback) or answers much slower, over enough
requests, the server rolls back at once: the registry's aliases first (so every server follows),
then its own holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelloop.config import Guardrails
from modelloop.serving.holder import ModelHolder, ServedModel

logger = logging.getLogger("modelloop.serving")

#: A version that failed to load is tried again after this pause, doubling up to the maximum.
RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0
#: Requests remembered per version to compare latencies (the p99 of the last ones).
LATENCY_WINDOW = 2000


@dataclass(frozen=True)
class Swap:
    """One swap the follower (or a rollback) made."""

    from_version: int
    to_version: int
    reason: str
    load_seconds: float
    at: float  # time.time()

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_version": self.from_version,
            "to_version": self.to_version,
            "reason": self.reason,
            "load_seconds": round(self.load_seconds, 3),
            "at": self.at,
        }


@dataclass
class _Traffic:
    """Answers of one version: counts of server errors and recent latencies."""

    requests: int = 0
    errors: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def add(self, status: int, seconds: float) -> None:
        """One answer the server gave (never a 4xx: the client's mistake says nothing)."""
        self.requests += 1
        if status >= 500:
            self.errors += 1
        else:
            self.latencies.append(seconds)

    def p99(self) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


class Bake:
    """Judges a version just swapped in against the one it replaced, until the bake ends.

    `record` is called for every answered scoring request, with the version that answered, its
    HTTP status and its latency; it returns the evidence of a breach once, or None.
    """

    def __init__(
        self,
        previous: ServedModel,
        current: ServedModel,
        *,
        guardrails: Guardrails,
        seconds: float,
        baseline: _Traffic | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.previous = previous
        self.current = current
        self.rules = guardrails
        self.ends_at = clock() + seconds
        self.clock = clock
        self.baseline = baseline or _Traffic()
        self.traffic = _Traffic()
        self.seen = 0
        self.verdict: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.verdict is None and self.clock() < self.ends_at

    def record(self, version: int, status: int, seconds: float) -> dict[str, Any] | None:
        if version != self.current.version or not self.active:
            return None
        if 400 <= status < 500:
            return None  # the client's mistake says nothing about the model
        self.seen += 1
        if self.seen <= self.rules.warmup_requests:
            return None
        self.traffic.add(status, seconds)
        if self.traffic.requests < self.rules.min_requests:
            return None
        self.verdict = self._judge()
        return self.verdict

    def _judge(self) -> dict[str, Any] | None:
        share = self.traffic.errors / self.traffic.requests
        evidence: dict[str, Any] = {
            "version": self.current.version,
            "previous_version": self.previous.version,
            "requests": self.traffic.requests,
            "server_errors": self.traffic.errors,
            "error_share": round(share, 4),
            "max_error_share": self.rules.max_error_share,
        }
        if share > self.rules.max_error_share:
            evidence["breach"] = (
                f"{share:.1%} of version {self.current.version}'s answers were server errors "
                f"(guardrail {self.rules.max_error_share:.1%}) over {self.traffic.requests} requests"
            )
            return evidence
        new_p99, old_p99 = self.traffic.p99(), self.baseline.p99()
        enough = len(self.baseline.latencies) >= self.rules.min_requests
        if new_p99 is not None and old_p99 is not None and enough:
            evidence.update(p99_ms=round(new_p99 * 1000, 2), previous_p99_ms=round(old_p99 * 1000, 2))
            if new_p99 > self.rules.max_p99_ratio * old_p99:
                evidence["breach"] = (
                    f"version {self.current.version}'s p99 latency {new_p99 * 1000:.1f} ms is more "
                    f"than {self.rules.max_p99_ratio:g}x version {self.previous.version}'s "
                    f"{old_p99 * 1000:.1f} ms over {self.traffic.requests} requests"
                )
                return evidence
        # Within the guardrails so far: judged again at every answer until the bake ends (as
        # SageMaker watches its alarms through the whole baking period).
        return None


class ChampionFollower:
    """Keeps `holder` on the version the registry's `champion` alias names.

    Args:
        champion: reads the alias (a registry call; run on a worker thread); None when unset.
        load: loads and warms a version (seconds; run on a worker thread).
        interval: seconds between checks.
    """

    def __init__(
        self,
        holder: ModelHolder,
        *,
        champion: Callable[[], int | None],
        load: Callable[[int], ServedModel],
        interval: float,
        on_swap: Callable[[ServedModel, ServedModel, str], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.holder = holder
        self._on_tick = on_tick
        self._champion = champion
        self._load = load
        self.interval = interval
        self._on_swap = on_swap
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._retry: dict[int, tuple[float, float]] = {}  # version -> (not before, pause)
        self.swaps: list[Swap] = []
        self.last_error: str | None = None
        self.last_check: float | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="modelloop-champion-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check("the champion alias moved")
                if self._on_tick is not None:
                    self._on_tick()
            except Exception:  # a bug here must not stop following; it is logged
                logger.exception("following the champion alias failed")

    async def check(self, reason: str, *, force: bool = False) -> Swap | None:
        """Read the alias and swap to the version it names, if it is not served already.

        `force` ignores the retry pause of a version that failed to load (an operator asked)."""
        async with self._lock:
            self.last_check = time.time()
            try:
                target = await asyncio.to_thread(self._champion)
            except Exception as exc:  # an outage: keep serving what we have, say so once a poll
                self.last_error = f"cannot read the champion alias: {exc}"
                logger.warning("%s; still serving version %d", self.last_error, self.holder.version)
                return None
            if target is None or target == self.holder.version:
                self.last_error = None
                return None
            not_before, last_pause = self._retry.get(target, (0.0, 0.0))
            if not force and time.monotonic() < not_before:
                return None
            try:
                model = await asyncio.to_thread(self._load, target)
            except Exception as exc:
                pause = min(last_pause * 2, MAX_RETRY_SECONDS) if last_pause else RETRY_SECONDS
                self._retry[target] = (time.monotonic() + pause, pause)
                self.last_error = f"version {target} failed to load: {exc}"
                logger.error("%s; still serving version %d, retrying in %.0f s",
                             self.last_error, self.holder.version, pause)
                return None
            self._retry.pop(target, None)
            self.last_error = None
            if self.holder.version == target:
                return None  # served already (a rollback swapped it in while this one loaded)
            return self.swap_to(model, reason)

    def swap_to(self, model: ServedModel, reason: str) -> Swap:
        """Serve `model` from the next request on (used by rollbacks too)."""
        old = self.holder.swap(model)
        swap = Swap(old.version, model.version, reason, model.load_seconds, time.time())
        self.swaps.append(swap)
        logger.warning("now serving version %d (was %d): %s", model.version, old.version, reason)
        if self._on_swap is not None:
            self._on_swap(old, model, reason)
        return swap


class Guard:
    """The request path's side of blue-green: every scoring answer is recorded here (version,
    status, latency); after a swap the previous version stays loaded for the bake, and a breach
    of the guardrails calls `on_breach` once, on the event loop."""

    def __init__(
        self,
        *,
        guardrails: Guardrails,
        bake_seconds: float,
        on_breach: Callable[[Bake, dict[str, Any]], Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = guardrails
        self.bake_seconds = bake_seconds
        self._on_breach = on_breach
        self._clock = clock
        self._traffic: dict[int, _Traffic] = {}
        self.bake: Bake | None = None

    def record(self, version: int, status: int, seconds: float) -> None:
        traffic = self._traffic.get(version)
        if traffic is None:
            traffic = self._traffic[version] = _Traffic()
            for old in [v for v in self._traffic if v != version][:-2]:
                del self._traffic[old]  # only the last few versions matter
        if not 400 <= status < 500:
            traffic.add(status, seconds)
        bake = self.bake
        if bake is not None:
            evidence = bake.record(version, status, seconds)
            if evidence is not None:  # a breach, once
                self._on_breach(bake, evidence)

    def swapped(self, old: ServedModel, new: ServedModel, reason: str) -> None:
        """A swap happened: bake the new version against the old one (not after a rollback)."""
        if reason.startswith("rollback"):
            self.bake = None
            return
        self.bake = Bake(
            old,
            new,
            guardrails=self.rules,
            seconds=self.bake_seconds,
            baseline=self._traffic.get(old.version),
            clock=self._clock,
        )

    def loaded(self, current: ServedModel) -> dict[int, ServedModel]:
        """The versions this server holds: the current one, and the previous one while baking."""
        models = {current.version: current}
        bake = self.bake
        if bake is not None and bake.clock() < bake.ends_at and bake.previous.version not in models:
            models[bake.previous.version] = bake.previous
        return models

    def status(self) -> dict[str, Any] | None:
        bake = self.bake
        if bake is None:
            return None
        return {
            "version": bake.current.version,
            "previous_version": bake.previous.version,
            "baking": bake.active,
            "seconds_left": max(0.0, round(bake.ends_at - bake.clock(), 1)),
            "judged_requests": bake.traffic.requests,
            "verdict": bake.verdict,
        }
