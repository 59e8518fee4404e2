"""Blue-green on one machine: a version swapped in that fails during the bake is rolled back by
the server itself, in the registry first (so every server follows) and then in its own holder,
with the evidence recorded as the gate's rollback records it; a client sending garbage cannot
force a rollback."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd

from modelloop.config import parse_config
from modelloop.examples.server import BackgroundServer
from modelloop.gate import ROLLED_BACK, promote
from modelloop.project import Project
from modelloop.serving import create_app

ROWS = {"dataframe_records": [{"hour": 6, "distance": 300.0, "temp": 2.5, "carrier": "DL"}]}
FAST = {"reload_interval": "200ms", "bake": "10m",
        "guardrails": {"min_requests": 20, "warmup_requests": 0}}


class _FailsOnRequests:
    """A version that loads and warms fine, then fails on the rows clients send."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        if self.calls > 1:  # the first call is the warm-up
            raise RuntimeError("a broken feature transform")
        return np.asarray(self.inner.predict(frame))


def _project(make_project: Callable[..., Project], raw_config: dict[str, Any],
             as_of: datetime) -> Project:
    raw = copy.deepcopy(raw_config)
    raw["serving"] = FAST
    project = make_project(config=parse_config(raw))
    project.train(as_of=as_of)
    project.train(as_of=as_of, gate=False)  # version 2, to be promoted by hand
    load = project.registry.load_predictor

    def load_predictor(name: str, version: int) -> Any:
        inner = load(name, version)
        return _FailsOnRequests(inner) if version == 2 else inner

    project.registry.load_predictor = load_predictor  # type: ignore[method-assign]
    return project


def _wait(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_a_failing_version_is_rolled_back_by_the_server(
        make_project: Callable[..., Project], raw_config: dict[str, Any], as_of: datetime) -> None:
    project = _project(make_project, raw_config, as_of)
    web = create_app(project)
    with BackgroundServer(web) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/invocations", json=ROWS).headers["x-model-version"] == "1"
        promote(project.registry, project.name, 2)  # the gate (or a person) promotes version 2
        _wait(lambda: web.holder.version == 2)
        statuses = []
        for _ in range(60):
            answer = http.post("/invocations", json=ROWS)
            statuses.append((answer.status_code, answer.headers.get("x-model-version")))
            if answer.headers.get("x-model-version") == "1":
                break
        assert (500, "2") in statuses  # version 2 did fail
        _wait(lambda: web.holder.version == 1)
        assert http.post("/invocations", json=ROWS).status_code == 200
        time.sleep(0.6)  # a few follower polls: it must not swap forward again
        assert web.holder.version == 1

    champion = project.registry.alias(project.name, "champion")
    assert champion is not None and champion.version == 1
    assert project.registry.get_version(project.name, 2).status == "retired"
    rolled = project.db.decisions()[0]
    assert rolled["outcome"] == ROLLED_BACK and rolled["metrics"]["by"] == "server guardrails"
    evidence = rolled["metrics"]["evidence"]
    assert evidence["version"] == 2 and evidence["server_errors"] >= 1
    assert "server errors" in evidence["breach"]


def test_bad_requests_never_roll_back(
        make_project: Callable[..., Project], raw_config: dict[str, Any], as_of: datetime) -> None:
    project = make_project(config=parse_config({**copy.deepcopy(raw_config), "serving": FAST}))
    project.train(as_of=as_of)
    second, _ = project.train(as_of=as_of, gate=False)
    web = create_app(project)
    with BackgroundServer(web) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        promote(project.registry, project.name, second.version.version)
        _wait(lambda: web.holder.version == 2)
        for _ in range(100):
            garbage = {"dataframe_records": [{"hour": "garbage"}]}
            assert http.post("/invocations", json=garbage).status_code == 400
        assert http.post("/invocations", json=ROWS).status_code == 200
        assert web.holder.version == 2
    assert project.registry.alias(project.name, "champion").version == 2  # type: ignore[union-attr]
