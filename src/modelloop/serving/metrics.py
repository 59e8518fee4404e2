"""`GET /metrics`: the server in Prometheus' text format (prometheus-client), for Grafana & co.

One registry per app (not the process-global one), so two apps in one process never mix their
counts. Recording a request costs a few dictionary lookups and one vectorised bucketing of its
predictions: the hot path pays once per answer, never per row.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Latency buckets (seconds) around what a micro-batched server answers in: 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
PROBABILITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
#: A regression's predictions, whatever their unit: both signs, by powers of ten.
VALUE_BUCKETS = tuple(
    sorted({-(10.0**k) for k in range(-2, 7)} | {0.0} | {10.0**k for k in range(-2, 7)})
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """The server's counters, histograms and gauges, in a registry of their own."""

    def __init__(self, model: str, task: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.model = model
        self.requests = Counter(
            "modelloop_requests",
            "HTTP requests answered, by route, status and the model version that answered",
            ["route", "status", "version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelloop_request_seconds",
            "Time from the request's arrival to its answer, by route and version",
            ["route", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "modelloop_batch_rows",
            "Rows scored together in one model call (micro-batching)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.predictions = _Predictions(
            "modelloop_predictions",
            "The predictions answered: the positive class's probability, or the value",
            PROBABILITY_BUCKETS if task == "classification" else VALUE_BUCKETS,
        )
        self.registry.register(self.predictions)
        self.version = Gauge(
            "modelloop_model_version", "The version answering requests now", registry=self.registry
        )
        self.load_seconds = Gauge(
            "modelloop_model_load_seconds",
            "How long loading and warming a version took",
            ["version"],
            registry=self.registry,
        )
        self.swaps = Counter(
            "modelloop_model_swaps",
            "Swaps of the served version, by why (the alias moved, a rollback)",
            ["reason"],
            registry=self.registry,
        )

    def served(self, version: int, load_seconds: float) -> None:
        self.version.set(version)
        self.load_seconds.labels(str(version)).set(load_seconds)

    def answered(self, route: str, status: int, version: int | None, seconds: float) -> None:
        label = "" if version is None else str(version)
        self.requests.labels(route, str(status), label).inc()
        self.latency.labels(route, label).observe(seconds)

    def scored(self, version: int, predictions: list[float]) -> None:
        self.predictions.observe(version, predictions)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A value read when scraped (e.g. the write-ahead log's backlog)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


#: Requests up to this many rows are bucketed value by value.
_FEW = 8


class _Predictions:
    """A histogram of predictions by version, counted a request at a time (one vectorised
    bucketing per request, not one `observe` per row: a 10,000-row request is one call)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype="float64")
        self._bounds = list(buckets)
        self._counts: dict[int, np.ndarray] = {}
        self._sums: dict[int, float] = {}
        self._lock = threading.Lock()

    def observe(self, version: int, values: list[float]) -> None:
        # Slot i counts values <= bound i (Prometheus' `le`); the last slot, values above all.
        with self._lock:
            counts = self._counts.get(version)
            if counts is None:
                counts = self._counts[version] = np.zeros(len(self.bounds) + 1, dtype=np.int64)
            if len(values) <= _FEW:  # a request of a few rows: numpy's call costs more
                for value in values:
                    counts[bisect.bisect_left(self._bounds, value)] += 1
                self._sums[version] = self._sums.get(version, 0.0) + sum(values)
                return
            array = np.asarray(values, dtype="float64")
            slots = np.searchsorted(self.bounds, array, side="left")
            counts += np.bincount(slots, minlength=len(self.bounds) + 1)
            self._sums[version] = self._sums.get(version, 0.0) + float(array.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["version"])
        with self._lock:
            snapshot = [(v, c.copy(), self._sums[v]) for v, c in self._counts.items()]
        for version, counts, total in sorted(snapshot, key=lambda item: item[0]):
            cumulative = np.cumsum(counts)
            buckets = [(_le(b), float(n)) for b, n in zip(self.bounds, cumulative[:-1], strict=True)]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric([str(version)], buckets, total)
        yield family


def _le(bound: float) -> str:
    return repr(float(bound))  # 0.5, 1.0, -100.0: a float as Prometheus reads it


def route_of(path: str) -> str:
    """A bounded label for a path: the route template, never the raw path (ids, names)."""
    if path.startswith("/v2/models/"):
        tail = path.rsplit("/", 1)[-1]
        return f"/v2/models/{{name}}/{tail}" if tail in ("infer", "ready") else "/v2/models/{name}"
    if path in _ROUTES:
        return path
    if path.startswith("/v2"):
        return "/v2/other"
    return "other"


_ROUTES = frozenset(
    {"/invocations", "/labels", "/ping", "/health", "/version", "/metrics", "/admin/reload",
     "/admin/status", "/v2", "/v2/health/live", "/v2/health/ready"}
)
