"""What the serving app's routes share: the loaded service, its endpoints, readiness."""

from __future__ import annotations

import asyncio
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
        self.swapper: Any = None  # kappa_online.swap.Swapper, with --watch or an admin token

    def load(self) -> None:
        """In a thread: resolve, verify and load the bundle (unless an in-memory service was given)."""
        if self.service is not None:
            return
        self.service, self.manifest = load_service(self.config.bundle, self.config.digest)

    def _endpoints(self, service: Any, tag: str) -> dict[str, Endpoint]:
        return {
            name: Endpoint(api, BatchRunner(service, name), self.config, self.metrics, tag)
            for name, api in service.inference_apis.items()
        }

    def start_endpoints(self) -> None:
        self.endpoints = self._endpoints(self.service, self.manifest.tag)
        for endpoint in self.endpoints.values():
            endpoint.dispatcher.start()
        self.metrics.serving(self.manifest.tag)

    async def swap_to(self, tag: str) -> None:
        """Load ``tag``, check it can stand in for the serving version, warm it, then swap it in."""
        from kappa.bundle.load import locate
        from kappa.bundle.manifest import load_manifest
        from kappa_online import swap

        loop = asyncio.get_running_loop()

        def prepare() -> tuple[Any, Any, dict[str, Endpoint]]:
            located = locate(tag)
            manifest = load_manifest(located.path)  # this version's own (files may equal another's)
            service, _ = load_service(tag, located.digest)
            swap.check_signature(self.manifest, manifest)
            endpoints = self._endpoints(service, manifest.tag)
            swap.warm(endpoints, {name: e.sample for name, e in self.endpoints.items()})
            return service, manifest, endpoints

        service, manifest, endpoints = await loop.run_in_executor(None, prepare)
        for endpoint in endpoints.values():
            endpoint.dispatcher.start()
        old, previous = self.endpoints, self.manifest.tag
        self.service, self.manifest, self.endpoints = service, manifest, endpoints  # the swap
        self.metrics.serving(manifest.tag, previous)
        loop.create_task(swap.retire(old), name=f"retire-{previous}")
