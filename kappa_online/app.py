"""The Starlette app that serves a bundle: ``create_app("IrisClassifier:latest")``.

Routes: ``POST /<api>`` for every API, ``GET /metadata``, ``/healthz``, ``/livez``,
``/readyz``, ``/metrics`` (Prometheus), ``/docs`` (Swagger UI from local files) and
``/openapi.json``, the Open Inference Protocol (V2) routes under ``/v2``, and the
bundle's static web content at ``/``.

The model loads (in a thread) before the process accepts connections, so with several
worker processes on one port no request reaches a worker that cannot serve it yet.
On SIGTERM ``/readyz`` turns false first; in-flight and queued requests still finish
before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import Message, Receive, Scope, Send

from kappa.deploy.image import DRAIN_SECONDS
from kappa.errors import KappaError
from kappa_online import routes
from kappa_online.config import ServeConfig
from kappa_online.limits import BodyLimit
from kappa_online.replies import request_id
from kappa_online.state import State

log = logging.getLogger(__name__)
LOG_DRAIN_SECONDS = 10.0  # what the prediction log may take to write what waits, after the drain


class KappaApp:
    """The ASGI app: ``POST /<api>`` goes straight to its :class:`Endpoint`, the rest to Starlette.

    The scoring path skips Starlette's middleware, routing, Request and Response objects
    (a one-row request is mostly such per-request work); a server that is not ready
    (loading or shutting down) and unknown APIs still answer through the Starlette routes.
    """

    def __init__(self, app: Starlette, state: State) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.state.ready:
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            endpoint = self.state.endpoints.get(path[1:])
            if endpoint is not None:
                if self.state.canary_endpoints:
                    endpoint = self.state.route(path[1:], scope, endpoint)
                await endpoint.asgi(scope, receive, send)
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        always = [request_id(scope)]
        if self.state.manifest is not None:
            always.append((b"x-kappa-version", self.state.manifest.tag.encode("latin-1", "replace")))

        async def stamped(message: Message) -> None:  # every answer says which version and request
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                own = {key.lower() for key, _ in headers}  # a V2 answer names the version that scored it
                message = {**message, "headers": [*headers, *(h for h in always if h[0] not in own)]}
            await send(message)

        await self.app(scope, receive, stamped)


def create_app(bundle: str | None = None, config: ServeConfig | None = None, service: Any = None) -> KappaApp:
    """The app for ``bundle`` (a path, URL or NAME[:VERSION|:latest]), or for an in-memory
    ``service`` (the dev server); ``config`` for the rest."""
    if service is not None:
        from kappa.bundle.save import describe_service

        config = config or ServeConfig(bundle=f"{service.name} (in memory)")
    elif config is None:
        config = ServeConfig(bundle=bundle) if bundle else ServeConfig.from_env()
    state = State(config)
    if service is not None:
        state.service, state.manifest, state.in_memory = service, describe_service(service), True

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _watch_sigterm(state)
        await _load(state)  # before the first accept: no worker process takes requests it cannot serve
        if state.failed:
            raise KappaError(f"cannot serve {state.config.bundle}: {state.failed}")
        watching = _start_swapper(state)
        try:
            yield
        finally:
            for task in watching:
                task.cancel()
            state.ready = False
            state.metrics.ready.set(0)
            for endpoint in state.all_endpoints():
                await endpoint.dispatcher.close()
            if state.retiring:  # swapped-out versions finish what they hold, within the drain
                await asyncio.wait(state.retiring, timeout=DRAIN_SECONDS)
            if state.payload_log is not None:  # what was answered is logged before the process leaves
                # the pod's grace period is the drain time plus 10 s (kappa k8s): the log gets those 10 s
                await asyncio.get_running_loop().run_in_executor(
                    None, state.payload_log.close, LOG_DRAIN_SECONDS
                )
            state.metrics.close()

    app = Starlette(
        routes=routes.build(state),
        lifespan=lifespan,
        middleware=[Middleware(BodyLimit, limit=config.max_body_bytes)],
    )
    app.state.kappa = state
    return KappaApp(app, state)


async def _load(state: State) -> None:
    try:
        await asyncio.get_running_loop().run_in_executor(None, state.load)
    except Exception as exc:  # noqa: BLE001 - reported by /readyz and the log, the process stays up
        state.failed = f"{type(exc).__name__}: {exc}"
        log.error("cannot load %s: %s", state.config.bundle, state.failed)
        return
    state.start_endpoints()
    import gc

    if not state.in_memory:  # never freeze a notebook's heap
        gc.collect()
        gc.freeze()  # the loaded model and libraries leave the collector's scans: no long pauses
    state.ready = True
    state.metrics.ready.set(1)
    log.info("serving %s (%s)", state.manifest.tag, ", ".join(f"POST /{n}" for n in state.endpoints))


def _start_swapper(state: State) -> list[asyncio.Task[None]]:
    """The hot-swap machinery, for a server of ``NAME:latest`` with ``--watch`` or an admin token
    (a fixed version or a folder never changes under its clients): the ``--watch`` loop's task,
    and with several workers the task that follows the other workers' reloads."""
    config = state.config
    if state.in_memory or not config.watch or not (config.poll or config.admin_token):
        return []
    from kappa_online.swap import Swapper

    swapper = state.swapper = Swapper(state)
    tasks = []
    if config.reload_signal and config.admin_token:
        tasks.append(asyncio.get_running_loop().create_task(swapper.follow(config.reload_signal)))
    if config.poll:
        log.info("watching %s for newer versions every %.0f s", config.watch, config.watch_interval)
        tasks.append(asyncio.get_running_loop().create_task(swapper.run(), name="kappa-watch"))
    return tasks


def _watch_sigterm(state: State) -> None:
    """Readiness turns false as soon as SIGTERM arrives; the server's own handler then drains."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        return

    def on_term(signum: int, frame: Any) -> None:
        state.ready = False
        state.metrics.ready.set(0)
        if callable(previous):
            previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (e.g. an in-process test client)
        pass
