"""The micro-batcher: concurrent requests share one model call and one log write, a lone client
is never kept waiting, one bad request does not fail its neighbours, and nothing is answered
before it is in the log."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelloop.data import ColumnRule, Contract
from modelloop.serving import Columns, RequestValidator, ServedModel
from modelloop.serving.batcher import LogUnavailable, MicroBatcher, ScoringFailed
from modelloop.serving.logger import PredictionLogger, Scored
from modelloop.store import MemoryLogStore

CONTRACT = Contract(
    task="classification",
    columns=(
        ColumnRule("flight_id", "id", False),
        ColumnRule("sched_dep", "timestamp", False),
        ColumnRule("hour", "numeric", False),
        ColumnRule("carrier", "categorical", True),
        ColumnRule("delayed", "target", False),
    ),
)


class Recording:
    """A predictor that returns hour / 100 and remembers the size of every call."""

    def __init__(self, delay: float = 0.0, poison: float | None = None) -> None:
        self.calls: list[int] = []
        self.threads: list[str] = []
        self.delay = delay
        self.poison = poison

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(frame))
        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay)
        if self.poison is not None and (frame["hour"] == self.poison).any():
            raise ValueError("this model cannot score hour 13")
        return frame["hour"].to_numpy() / 100


def served(predictor: Any, version: int = 1) -> ServedModel:
    return ServedModel("flights", version, predictor, CONTRACT, RequestValidator(CONTRACT))


def rows(model: ServedModel, *hours: float, request: str = "r") -> Any:
    columns = Columns({"hour": list(hours), "carrier": ["UA"] * len(hours),
                       "flight_id": [f"{request}-{i}" for i in range(len(hours))]}, len(hours))
    return model.validator.validate(columns)


class FailingLog(PredictionLogger):
    def log(self, scored: Sequence[Scored]) -> None:
        raise OSError("disk full")


def store() -> MemoryLogStore:
    return MemoryLogStore("flights", id_column="flight_id", timestamp_column="sched_dep",
                          target_column="delayed")


async def send_all(batcher: MicroBatcher, model: ServedModel, count: int, *, gap: float = 0.0) -> list[Any]:
    async def one(i: int) -> Any:
        batcher.opened()
        try:
            return await batcher.score(model, rows(model, float(i), request=f"q{i}"), f"q{i}")
        except Exception as exc:  # the test looks at what each client got
            return exc
        finally:
            batcher.closed()

    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(one(i)))
        if gap:
            await asyncio.sleep(gap)
    return await asyncio.gather(*tasks)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_concurrent_requests_share_one_model_call_and_one_log_write() -> None:
    predictor = Recording(delay=0.05)
    logs = store()
    writes: list[int] = []
    original = logs.append_requests
    logs.append_requests = lambda requests: (writes.append(len(requests)), original(requests))[1]  # type: ignore[method-assign]

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(PredictionLogger(logs), max_batch=256, max_wait_ms=20)
        await batcher.start()
        answers = await send_all(batcher, served(predictor), 16)
        await batcher.stop()
        return answers

    answers = run(scenario())
    assert answers == [[i / 100] for i in range(16)]
    assert sum(predictor.calls) == 16 and len(predictor.calls) <= 3  # not one call per request
    assert sum(writes) == 16 and len(writes) == len(predictor.calls)
    assert len(logs.read_predictions()) == 16


def test_a_lone_client_is_scored_at_once_on_the_loop_thread() -> None:
    predictor = Recording()

    async def scenario() -> float:
        batcher = MicroBatcher(PredictionLogger(store()), max_wait_ms=500)
        await batcher.start()
        model = served(predictor)
        started = time.perf_counter()
        for i in range(5):
            batcher.opened()
            await batcher.score(model, rows(model, float(i)), f"lone-{i}")
            batcher.closed()
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert run(scenario()) < 0.25  # max_wait_ms (500) never applies to a lone client
    assert predictor.calls == [1] * 5
    assert set(predictor.threads) == {threading.main_thread().name}


def test_one_poisoned_request_fails_alone() -> None:
    predictor = Recording(delay=0.02, poison=13.0)
    logs = store()

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(PredictionLogger(logs), max_wait_ms=20)
        await batcher.start()
        answers = await send_all(batcher, served(predictor), 16)
        await batcher.stop()
        return answers

    answers = run(scenario())
    assert isinstance(answers[13], ScoringFailed) and "hour 13" in str(answers[13])
    assert [a for i, a in enumerate(answers) if i != 13] == [[i / 100] for i in range(16) if i != 13]
    logged = set(logs.read_predictions()["_request_id"])
    assert "q13" not in logged and len(logged) == 15


def test_nothing_is_acknowledged_when_the_log_cannot_be_written() -> None:
    async def scenario() -> list[Any]:
        batcher = MicroBatcher(FailingLog(store()), max_wait_ms=5)
        await batcher.start()
        answers = await send_all(batcher, served(Recording()), 4)
        await batcher.stop()
        return answers

    answers = run(scenario())
    assert all(isinstance(a, LogUnavailable) and "disk full" in str(a) for a in answers)


def test_each_request_is_scored_by_the_version_it_was_validated_for() -> None:
    old, new = Recording(delay=0.05), Recording(delay=0.05)
    logs = store()

    async def scenario() -> None:
        batcher = MicroBatcher(PredictionLogger(logs), max_wait_ms=20)
        await batcher.start()
        first, second = served(old, 1), served(new, 2)

        async def one(model: ServedModel, name: str) -> Any:
            batcher.opened()
            try:
                return await batcher.score(model, rows(model, 5.0, request=name), name)
            finally:
                batcher.closed()

        await asyncio.gather(*(one(first if i % 2 else second, f"v{i}") for i in range(8)))
        await batcher.stop()

    run(scenario())
    log = logs.read_predictions()
    by_request = dict(zip(log["_request_id"], log["_model_version"], strict=True))
    assert by_request == {f"v{i}": 1 if i % 2 else 2 for i in range(8)}
    assert sum(old.calls) == 4 and sum(new.calls) == 4


def test_stop_answers_everything_queued() -> None:
    async def scenario() -> list[Any]:
        batcher = MicroBatcher(PredictionLogger(store()), max_wait_ms=5)
        await batcher.start()
        model = served(Recording(delay=0.02))
        pending = [asyncio.create_task(batcher.score(model, rows(model, float(i)), f"s{i}"))
                   for i in range(6)]
        await asyncio.sleep(0)
        await batcher.stop()
        return await asyncio.gather(*pending)

    assert run(scenario()) == [[i / 100] for i in range(6)]


def test_scoring_needs_a_running_batcher() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(PredictionLogger(store()))
        model = served(Recording())
        await batcher.score(model, rows(model, 1.0), "x")

    with pytest.raises(RuntimeError, match="not running"):
        run(scenario())


class Fitted:
    """A fitted scikit-learn pipeline behind the model's own normalisation, as a version serves
    it; remembers the frames it was given."""

    def __init__(self) -> None:
        from modelloop.data.model_input import model_input
        from modelloop.training import build_pipeline

        self.normalise = model_input
        rng = np.random.default_rng(0)
        hours = rng.uniform(0, 24, 400)
        hours[rng.random(400) < 0.2] = np.nan
        carriers = rng.choice(np.array(["UA", "AA", "DL", None], dtype=object), 400)
        frame = pd.DataFrame({"hour": hours, "carrier": carriers})
        target = np.where(np.isnan(hours), carriers == None, (hours > 12) ^ (carriers == "UA"))  # noqa: E711
        self.pipeline = build_pipeline(
            "sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 20}, ["hour"], ["carrier"],
            "classification",
        )
        self.pipeline.fit(model_input(frame, ["hour"], ["carrier"]), target)
        self.frames: list[int] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.frames.append(id(frame))
        features = self.normalise(frame, ["hour"], ["carrier"])
        return np.asarray(self.pipeline.predict_proba(features)[:, 1], dtype="float64")


def test_a_lone_row_gets_exactly_what_the_same_row_gets_in_a_batch() -> None:
    # Lone one-row requests are scored through one frame refilled in place: nothing of a row
    # may linger into the next (a missing value after a present one), and the numbers must be
    # the very ones a frame built for the rows gives.
    contract = Contract(
        task="classification",
        columns=(
            ColumnRule("flight_id", "id", False),
            ColumnRule("sched_dep", "timestamp", False),
            ColumnRule("hour", "numeric", True),
            ColumnRule("carrier", "categorical", True),
        ),
    )
    predictor = Fitted()
    model = ServedModel("flights", 1, predictor, contract, RequestValidator(contract))
    hours = [5.0, None, 13.5, 13.5, None, 23.0]
    carriers = ["UA", "UA", None, "UA", None, "ZZ"]  # ZZ: a category the model never saw

    def request(picked: range) -> Any:
        columns = {"hour": [hours[i] for i in picked], "carrier": [carriers[i] for i in picked],
                   "flight_id": [f"f{i}" for i in picked]}
        return model.validator.validate(Columns(columns, len(picked)))

    async def scenario() -> tuple[list[float], list[float]]:
        batcher = MicroBatcher(PredictionLogger(store()))
        await batcher.start()
        together = await batcher.score(model, request(range(len(hours))), "all")
        alone = [(await batcher.score(model, request(range(i, i + 1)), f"one-{i}"))[0]
                 for i in range(len(hours))]
        await batcher.stop()
        return together, alone

    together, alone = run(scenario())
    assert alone == together
    assert all(a != b for a, b in pairwise(together))  # a lingering value shows
    assert len(set(predictor.frames[1:])) == 1  # the lone rows shared one frame
