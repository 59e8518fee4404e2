"""/metrics' prediction histogram counts as Prometheus' own Histogram would, whether a request
holds one row (bucketed value by value) or thousands (bucketed at once)."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from modelloop.serving.metrics import PROBABILITY_BUCKETS, ServingMetrics


def _lines(text: bytes, version: str) -> list[str]:
    return sorted(line.replace(f',version="{version}"', "").replace(f'{{version="{version}"}}', "")
                  for line in text.decode().splitlines()
                  if line.startswith("modelloop_predictions_") and f'version="{version}"' in line)


def test_the_prediction_histogram_matches_prometheus_own() -> None:
    values = np.random.default_rng(0).random(5000).round(1).tolist()  # many exactly on a bound
    ours = ServingMetrics("m", "classification")
    for value in values[:50]:
        ours.scored(1, [value])  # one-row requests
    ours.scored(1, values[50:])  # one big one
    registry = CollectorRegistry()
    theirs = Histogram("modelloop_predictions", "x", ["version"], buckets=PROBABILITY_BUCKETS,
                       registry=registry)
    for value in values:
        theirs.labels("1").observe(value)
    expected = [line for line in _lines(generate_latest(registry), "1")
                if "_created" not in line]
    got = _lines(ours.exposition(), "1")
    assert [g.split()[0] for g in got] == [e.split()[0] for e in expected]
    assert np.allclose([float(g.split()[1]) for g in got], [float(e.split()[1]) for e in expected])
