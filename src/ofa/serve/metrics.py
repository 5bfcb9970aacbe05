"""Prometheus metrics of the server, through ``prometheus_client``.

Each app gets its own registry (not the process-global one), so several apps in one process
(tests, embedding) never mix their numbers. The queue depth is read from the batcher at
scrape time instead of being counted up and down, so it can never drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class _QueueDepth:
    """Custom collector: one gauge sample per task, read live."""

    def __init__(self, tasks: Iterable[str], depth: Callable[[str], int],
                 in_flight: Callable[[], int]) -> None:
        self._tasks = tuple(tasks)
        self._depth = depth
        self._in_flight = in_flight

    def collect(self) -> Iterable[Metric]:
        queued = GaugeMetricFamily("ofa_queue_depth", "Requests waiting for a batch",
                                   labels=["task"])
        for task in self._tasks:
            queued.add_metric([task], self._depth(task))
        yield queued
        yield GaugeMetricFamily("ofa_requests_in_model", "Requests inside a running model call",
                                value=self._in_flight())


class ServeMetrics:
    """Requests by task and status, request latency, batch sizes and model time per batch,
    queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ofa_requests", "HTTP requests to task endpoints",
                                ["task", "status"], registry=self.registry)
        self.latency = Histogram("ofa_request_latency_seconds",
                                 "Time from request arrival to response, task endpoints",
                                 ["task"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("ofa_batch_size", "Requests per model call", ["task"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("ofa_batch_seconds", "Duration of one model call",
                                       ["task"], buckets=LATENCY_BUCKETS,
                                       registry=self.registry)

    def watch_queues(self, tasks: Iterable[str], depth: Callable[[str], int],
                     in_flight: Callable[[], int]) -> None:
        self.registry.register(_QueueDepth(tasks, depth, in_flight))

    def observe_request(self, task: str, status: int, seconds: float) -> None:
        self.requests.labels(task=task, status=str(status)).inc()
        self.latency.labels(task=task).observe(seconds)

    def observe_batch(self, task: str, size: int, seconds: float) -> None:
        self.batch_size.labels(task=task).observe(size)
        self.batch_seconds.labels(task=task).observe(seconds)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asks for (Prometheus text by default)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type
