"""Shadow traffic: the challenger scores copies of live requests on its own thread and logs them
to a log of their own, never the champion's; a slow or broken challenger costs nothing but
skipped shadow rows."""

from __future__ import annotations

import threading
from datetime import datetime

import numpy as np
import pandas as pd

from modelloop.serving.holder import ServedModel
from modelloop.serving.logger import PredictionLogger
from modelloop.serving.shadow import ShadowScorer
from modelloop.serving.validation import ValidRows
from modelloop.store import MemoryLogStore
from tests.serving.test_follower import CONTRACT, served


def _frame(model: ServedModel, requests: list[ValidRows]) -> pd.DataFrame:
    return pd.DataFrame({"x": [v for r in requests for v in r.features["x"]]})


def _rows(n: int) -> ValidRows:
    return ValidRows(n, {"x": [float(i) for i in range(n)]}, [f"r{i}" for i in range(n)],
                     [datetime(2024, 5, 1)] * n)


def _store() -> MemoryLogStore:
    return MemoryLogStore("m", id_column="id", timestamp_column="t", target_column="y")


def test_the_challenger_scores_off_the_request_path_into_its_own_log() -> None:
    shadow_log = _store()
    scorer = ShadowScorer(PredictionLogger(shadow_log), challenger=lambda: 7, load=served,
                          frame_of=_frame)
    scorer.start()
    scorer.submit(_rows(3), "req-1")
    scorer.submit(_rows(2), "req-2")
    scorer.stop()
    logged = shadow_log.read_predictions()
    assert logged["_model_version"].tolist() == [7] * 5
    assert logged["_prediction"].tolist() == [7.0] * 5  # the challenger's numbers
    assert scorer.scored == 2 and scorer.version == 7


def test_a_full_queue_skips_rather_than_waits() -> None:
    gate = threading.Event()

    def slow_load(version: int) -> ServedModel:
        gate.wait(5)
        return served(version)

    scorer = ShadowScorer(PredictionLogger(_store()), challenger=lambda: 2, load=slow_load,
                          frame_of=_frame, max_queue=2)
    scorer.start()
    for i in range(10):
        scorer.submit(_rows(1), f"r{i}")  # returns at once, even with the thread stuck
    assert scorer.skipped >= 7
    gate.set()
    scorer.stop()


def test_no_challenger_or_a_failing_one_logs_nothing() -> None:
    log = _store()
    scorer = ShadowScorer(PredictionLogger(log), challenger=lambda: None, load=served,
                          frame_of=_frame)
    scorer.start()
    scorer.submit(_rows(2), "r")
    scorer.stop()
    assert log.read_predictions().empty and scorer.skipped == 1

    class Broken:
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            raise RuntimeError("boom")

    broken = ServedModel("m", 9, Broken(), CONTRACT, served(9).validator)
    scorer = ShadowScorer(PredictionLogger(log), challenger=lambda: 9, load=lambda v: broken,
                          frame_of=_frame)
    scorer.start()
    scorer.submit(_rows(2), "r")
    scorer.stop()
    assert log.read_predictions().empty and scorer.failed == 1
