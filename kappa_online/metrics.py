"""Prometheus metrics of the server (a registry per app, so tests and apps never share).

With ``kappa serve --workers N`` every worker process writes its samples to files in
``$PROMETHEUS_MULTIPROC_DIR`` (which ``kappa serve`` creates), and whichever worker
answers ``/metrics`` reports the sum over all of them, as prometheus-client's
multiprocess mode does.
"""

from __future__ import annotations

import os
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kappa_requests", "HTTP requests by API and status", ["api", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "kappa_request_duration_seconds",
            "Request latency by API and status",
            ["api", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "kappa_batch_size_rows",
            "Rows per scored batch",
            ["api"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "kappa_queue_wait_seconds",
            "Time a request waited before its batch started",
            ["api"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows_error = Counter(
            "kappa_rows_error", "Rows that got no prediction", ["api"], registry=self.registry
        )
        self.ready = Gauge(
            "kappa_ready",
            "Server processes with the model loaded and serving",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

        self.version = Gauge(
            "kappa_serving_version",
            "1 for the bundle version (NAME:VERSION) this process serves",
            ["version"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )

        self.version_requests = Counter(
            "kappa_version_requests",
            "HTTP requests by bundle version (NAME:VERSION) and status: a canary against its primary",
            ["version", "status"],
            registry=self.registry,
        )
        self.version_latency = Histogram(
            "kappa_version_request_duration_seconds",
            "Request latency by bundle version",
            ["version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.log_dropped = Counter(
            "kappa_prediction_log_dropped",
            "Logged rows dropped (the log's queue was full, or its store could not be written)",
            ["log"],
            registry=self.registry,
        )
        self.log_written = Counter(
            "kappa_prediction_log_written",
            "Logged rows written to the log's store",
            ["log"],
            registry=self.registry,
        )

        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._by_version: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._queue_wait: dict[str, Any] = {}

    def observe(self, api: str, status: int, seconds: float) -> None:
        children = self._children.get((api, status))
        if children is None:  # label lookups cost more than the update: keep the children
            children = self.requests.labels(api, str(status)), self.latency.labels(api, str(status))
            self._children[(api, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_version(self, version: str, status: int, seconds: float) -> None:
        children = self._by_version.get((version, status))
        if children is None:
            children = (
                self.version_requests.labels(version, str(status)),
                self.version_latency.labels(version),
            )
            self._by_version[(version, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def serving(self, version: str, previous: str | None = None) -> None:
        if previous is not None and previous != version:
            self.version.labels(previous).set(0)
        self.version.labels(version).set(1)

    def queue_wait_of(self, api: str) -> Any:
        child = self._queue_wait.get(api)
        if child is None:
            child = self._queue_wait[api] = self.queue_wait.labels(api)
        return child

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if not multiprocess():
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess as shared

        everyone = CollectorRegistry()
        collect: Any = shared.MultiProcessCollector  # prometheus-client leaves these untyped
        collect(everyone)
        return generate_latest(everyone), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """This process is leaving: its live gauges (readiness) no longer count."""
        if multiprocess():
            from prometheus_client import multiprocess as shared

            dead: Any = shared.mark_process_dead
            dead(os.getpid())

    def batch_observer(self, api: str) -> Any:
        histogram = self.batch_rows.labels(api)
        return lambda rows, _seconds: histogram.observe(rows)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
