"""What the serving app's routes share: the loaded service, its endpoints, readiness."""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from typing import Any

from kappa import threads
from kappa.errors import KappaError
from kappa_batch.cache import forget, load_service
from kappa_batch.runner import BatchRunner
from kappa_online.config import ServeConfig
from kappa_online.endpoint import Endpoint
from kappa_online.metrics import Metrics

log = logging.getLogger(__name__)


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
        self.canary: tuple[Any, Any] | None = None  # (service, manifest) of --canary
        self.canary_endpoints: dict[str, Endpoint] = {}
        self._canary_cut = int(config.canary_weight * 10_000)
        self.payload_log: Any = None  # kappa_online.payload_log.PayloadLog, with --log-predictions
        self.retiring: set[asyncio.Task[None]] = set()  # swapped-out versions still closing

    def load(self) -> None:
        """In a thread: resolve, verify and load the bundle (unless an in-memory service was given),
        and the canary; a canary that cannot stand in for the bundle is refused in one log line."""
        share = threads.inherited()  # `kappa serve` set this process's share of the cores
        if share is not None and threads.current() != share:
            threads.limit(share)
        if self.service is None:
            self.service, self.manifest = load_service(self.config.bundle, self.config.digest)
        if self.config.canary and not self.in_memory:
            self.canary = self._load_canary(self.config.canary)

    def _load_canary(self, ref: str) -> tuple[Any, Any] | None:
        from kappa.bundle.load import locate
        from kappa.bundle.manifest import load_manifest
        from kappa_online.swap import check_signature

        try:
            located = locate(ref)
            manifest = load_manifest(located.path)
            service, _ = load_service(ref, located.digest)
            check_signature(self.manifest, manifest)
        except Exception as exc:  # noqa: BLE001 - the bundle serves alone
            why = str(exc) if isinstance(exc, KappaError) else f"{type(exc).__name__}: {exc}"
            log.error("no canary: %s cannot serve beside %s: %s", ref, self.manifest.tag, why)
            return None
        log.info("canary %s takes %.1f%% of the requests", manifest.tag, 100 * self.config.canary_weight)
        return service, manifest

    def route(self, name: str, scope: Any, primary: Endpoint) -> Endpoint:
        """The endpoint a request goes to: the canary's for its share of requests, chosen by a hash
        of the request's X-Request-Id (the same id always lands on the same version), else at random."""
        canary = self.canary_endpoints.get(name)
        if canary is None:
            return primary
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                return canary if zlib.crc32(value) % 10_000 < self._canary_cut else primary
        return canary if random.random() * 10_000 < self._canary_cut else primary  # noqa: S311 (not security)

    def all_endpoints(self) -> list[Endpoint]:
        return [*self.endpoints.values(), *self.canary_endpoints.values()]

    def serving(self) -> list[str]:
        return [self.manifest.tag] + ([self.canary[1].tag] if self.canary else [])

    def _endpoints(self, service: Any, tag: str) -> dict[str, Endpoint]:
        return {
            name: Endpoint(api, BatchRunner(service, name), self.config, self.metrics, tag, self.payload_log)
            for name, api in service.inference_apis.items()
        }

    def start_endpoints(self) -> None:
        if self.config.log_predictions and self.payload_log is None:
            from kappa_online.payload_log import PayloadLog

            config = self.config
            assert config.log_predictions is not None
            self.payload_log = PayloadLog(
                config.log_predictions,
                config.log_sample,
                config.log_format,
                self.metrics,
                config.log_flush_seconds,
            )
        self.endpoints = self._endpoints(self.service, self.manifest.tag)
        if self.canary is not None:
            self.canary_endpoints = self._endpoints(self.canary[0], self.canary[1].tag)
            self.metrics.serving(self.canary[1].tag)
        for endpoint in self.all_endpoints():
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
            try:
                swap.check_signature(self.manifest, manifest)
                endpoints = self._endpoints(service, manifest.tag)
                swap.warm(endpoints, {name: e.sample for name, e in self.endpoints.items()})
            except BaseException:
                if manifest.digest not in self._digests():
                    forget(manifest.digest)  # a refused candidate's model leaves the process
                raise
            return service, manifest, endpoints

        service, manifest, endpoints = await loop.run_in_executor(swap.loader(), prepare)
        for name, endpoint in endpoints.items():
            if name in self.endpoints:  # the batch times measured so far set its shedding bound too
                endpoint.dispatcher.batch_seconds = self.endpoints[name].dispatcher.batch_seconds
            endpoint.dispatcher.start()
        old, previous, old_digest = self.endpoints, self.manifest.tag, self.manifest.digest
        self.service, self.manifest, self.endpoints = service, manifest, endpoints  # the swap
        self.metrics.serving(manifest.tag, previous)
        retiring = loop.create_task(
            swap.retire(old, None if old_digest in self._digests() else old_digest), name=f"retire-{previous}"
        )
        self.retiring.add(retiring)
        retiring.add_done_callback(self.retiring.discard)

    def _digests(self) -> set[str]:
        """The bundles serving now (the primary and the canary)."""
        return {self.manifest.digest} | ({self.canary[1].digest} if self.canary else set())
