"""Prometheus metrics of one server process (a registry per app, so tests and apps never share)."""

from __future__ import annotations

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
        self.ready = Gauge("kappa_ready", "1 when the model is loaded and serving", registry=self.registry)

    def observe(self, api: str, status: int, seconds: float) -> None:
        self.requests.labels(api, str(status)).inc()
        self.latency.labels(api, str(status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def batch_observer(self, api: str) -> Any:
        histogram = self.batch_rows.labels(api)
        return lambda rows, _seconds: histogram.observe(rows)
