"""What the serving app's routes share: the loaded service, its endpoints, readiness."""

from __future__ import annotations

from typing import Any

from kappa_batch.cache import load_service
from kappa_batch.runner import BatchRunner
from kappa_online.config import ServeConfig
from kappa_online.endpoint import Endpoint
from kappa_online.metrics import Metrics


class State:
    """What the routes share: the loaded service, its endpoints, readiness."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.ready = False
        self.failed: str | None = None
        self.manifest: Any = None
        self.service: Any = None
        self.endpoints: dict[str, Endpoint] = {}
        self.in_memory = False  # serving a caller's service object (a notebook), not a bundle

    def load(self) -> None:
        """In a thread: resolve, verify and load the bundle (unless an in-memory service was given)."""
        if self.service is not None:
            return
        self.service, self.manifest = load_service(self.config.bundle, self.config.digest)

    def start_endpoints(self) -> None:
        for name, api in self.service.inference_apis.items():
            endpoint = Endpoint(api, BatchRunner(self.service, name), self.config, self.metrics)
            endpoint.dispatcher.start()
            self.endpoints[name] = endpoint
