"""Hot swap and the bake: the follower swaps to the version the champion alias names without
making requests wait; a version just swapped in that fails more, or answers much slower, than
the one it replaced is caught by the guardrails, and 4xx answers never count."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.config import Guardrails
from modelloop.data.contract import ColumnRule, Contract
from modelloop.serving.follower import Bake, ChampionFollower, Guard
from modelloop.serving.holder import ModelHolder, ServedModel
from modelloop.serving.presence import announce, running_servers, withdraw
from modelloop.serving.validation import RequestValidator

CONTRACT = Contract("regression", (ColumnRule("id", "id", False), ColumnRule("t", "timestamp", False),
                                   ColumnRule("x", "numeric", False)))


class _Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full(len(frame), self.value)


def served(version: int) -> ServedModel:
    return ServedModel("m", version, _Constant(float(version)), CONTRACT, RequestValidator(CONTRACT))


def test_the_follower_swaps_to_the_alias_and_requests_never_wait_on_the_load() -> None:
    async def scenario() -> None:
        alias = {"champion": 1}
        holder = ModelHolder(served(1))
        loading = threading.Event()

        def load(version: int) -> ServedModel:
            loading.set()
            time.sleep(0.3)  # a slow load, on a worker thread
            return served(version)

        follower = ChampionFollower(holder, champion=lambda: alias["champion"], load=load,
                                    interval=60)
        assert await follower.check("poll") is None  # already serving the champion
        alias["champion"] = 2
        swap = asyncio.create_task(follower.check("the champion alias moved"))
        while not loading.is_set():
            await asyncio.sleep(0.005)
        # Meanwhile requests are answered by version 1, at once.
        started = time.perf_counter()
        for _ in range(20):
            assert holder.current.version == 1
            await asyncio.sleep(0)
        assert time.perf_counter() - started < 0.1
        done = await swap
        assert done is not None and (done.from_version, done.to_version) == (1, 2)
        assert holder.version == 2
        assert await follower.check("poll") is None  # no flapping: nothing changes

    asyncio.run(scenario())


def test_a_version_that_fails_to_load_keeps_the_old_one_serving_and_is_retried_later() -> None:
    async def scenario() -> None:
        holder = ModelHolder(served(1))
        attempts: list[int] = []

        def load(version: int) -> ServedModel:
            attempts.append(version)
            raise RuntimeError("artifact missing")

        follower = ChampionFollower(holder, champion=lambda: 2, load=load, interval=60)
        assert await follower.check("poll") is None
        assert holder.version == 1 and "version 2 failed to load" in (follower.last_error or "")
        assert await follower.check("poll") is None  # within the retry pause: not tried again
        assert attempts == [2]
        assert await follower.check("asked", force=True) is None  # an operator may insist
        assert attempts == [2, 2]

    asyncio.run(scenario())


def test_a_registry_outage_keeps_the_current_version() -> None:
    async def scenario() -> None:
        holder = ModelHolder(served(3))

        def champion() -> int:
            raise ConnectionError("tracking server down")

        follower = ChampionFollower(holder, champion=champion, load=served, interval=60)
        assert await follower.check("poll") is None
        assert holder.version == 3 and "tracking server down" in (follower.last_error or "")

    asyncio.run(scenario())


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


RULES = Guardrails(max_error_share=0.01, max_p99_ratio=2.0, min_requests=200, warmup_requests=50)


def _guard(clock: _Clock) -> tuple[Guard, list[dict[str, Any]]]:
    breaches: list[dict[str, Any]] = []
    guard = Guard(guardrails=RULES, bake_seconds=600, on_breach=lambda b, e: breaches.append(e),
                  clock=clock)
    for _ in range(500):
        guard.record(1, 200, 0.010)  # version 1's baseline: 10 ms
    guard.swapped(served(1), served(2), "the champion alias moved")
    return guard, breaches


def test_server_errors_of_the_new_version_breach_after_the_warm_up() -> None:
    guard, breaches = _guard(_Clock())
    for i in range(50 + 199):
        guard.record(2, 500 if i % 20 == 0 else 200, 0.010)  # 5% server errors
    assert breaches == []  # not judged before 200 requests after the warm-up
    guard.record(2, 200, 0.010)
    assert len(breaches) == 1 and breaches[0]["previous_version"] == 1
    assert "server errors" in breaches[0]["breach"]
    guard.record(2, 500, 0.010)
    assert len(breaches) == 1  # once


def test_client_mistakes_never_count() -> None:
    guard, breaches = _guard(_Clock())
    for _ in range(5000):
        guard.record(2, 400, 0.001)  # a hostile client sending garbage
    for _ in range(300):
        guard.record(2, 200, 0.010)
    assert breaches == []


def test_a_slower_version_breaches_the_p99_guardrail() -> None:
    guard, breaches = _guard(_Clock())
    for _ in range(50 + 200):
        guard.record(2, 200, 0.030)  # three times slower
    assert len(breaches) == 1 and breaches[0]["p99_ms"] == pytest.approx(30.0)
    assert "more than 2x version 1's" in breaches[0]["breach"]


def test_after_the_bake_nothing_is_judged_and_the_previous_version_is_released() -> None:
    clock = _Clock()
    guard, breaches = _guard(clock)
    assert set(guard.loaded(served(2))) == {1, 2}
    clock.now = 601
    for _ in range(400):
        guard.record(2, 500, 0.010)
    assert breaches == []
    assert set(guard.loaded(served(2))) == {2}


def test_a_bake_without_a_baseline_judges_errors_only() -> None:
    clock = _Clock()
    bake = Bake(served(1), served(2), guardrails=RULES, seconds=600, clock=clock)
    for _ in range(250):
        assert bake.record(2, 200, 5.0) is None  # slow, but nothing to compare with


def test_running_servers_are_listed_and_dead_ones_dropped(tmp_path: Any) -> None:
    path = announce(tmp_path, "m", {"url": "http://127.0.0.1:8080", "version": 3,
                                   "started_at": time.time()})
    listed = running_servers(tmp_path, "m")
    assert [(s["url"], s["version"]) for s in listed] == [("http://127.0.0.1:8080", 3)]
    dead = path.with_name(path.name.replace(path.stem.rsplit("-", 1)[1], "999999999"))
    dead.write_text(path.read_text().replace('"pid": ', '"pid": 999999999, "old": '))
    assert len(running_servers(tmp_path, "m")) == 1 and not dead.exists()
    withdraw(path)
    assert running_servers(tmp_path, "m") == []
