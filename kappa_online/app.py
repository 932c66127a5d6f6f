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
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from kappa.adapters._json import dumps
from kappa.errors import InputError, KappaError
from kappa_online.codec import UnsupportedMediaType, conform, decode, encode
from kappa_online.dispatcher import Dispatcher, Overloaded, Scored
from kappa_online.limits import BodyLimit, BodyTooLarge, declared_too_large, limited, too_large_message
from kappa_online.metrics import Metrics

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    bundle: str
    max_batch_size: int | None = None  # rows; None: the API decorator's mb_max_batch_size
    max_latency_ms: float | None = None  # None: the API decorator's mb_max_latency
    microbatch: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY
    digest: str | None = None  # what the repository recorded for the bundle, checked before loading

    @classmethod
    def from_env(cls) -> ServeConfig:
        """For ``uvicorn --factory`` workers: the settings ``kappa serve`` put in the environment."""

        def number(name: str) -> float | None:
            value = os.environ.get(name)
            return float(value) if value else None

        rows = number("KAPPA_SERVE_MAX_BATCH_SIZE")
        return cls(
            bundle=os.environ["KAPPA_SERVE_BUNDLE"],
            max_batch_size=int(rows) if rows else None,
            max_latency_ms=number("KAPPA_SERVE_MAX_LATENCY"),
            microbatch=os.environ.get("KAPPA_SERVE_MICROBATCH", "1") == "1",
            max_body_bytes=int(number("KAPPA_SERVE_MAX_BODY") or DEFAULT_MAX_BODY),
            digest=os.environ.get("KAPPA_SERVE_DIGEST") or None,
        )


@dataclass(frozen=True)
class Reply:
    """An API answer: status, JSON body and extra headers; sent straight over ASGI or as a Response."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, dumps(data).encode(), tuple((headers or {}).items()))

    @classmethod
    def error(cls, status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
        return cls.json({"error": message}, status, headers)

    def response(self) -> Response:
        return Response(self.body, self.status, dict(self.headers), media_type="application/json")

    async def send(self, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body))]
        if self.headers:
            extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
            if any(k == b"content-type" for k, _ in extra):
                headers = headers[1:]
            headers += extra
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Reply.json(data, status, headers).response()


def internal_error(what: str, exc: BaseException | None = None, detail: str = "") -> Reply:
    """A 500 that says nothing of the exception: it is logged under a request id, which the
    body and the ``X-Request-Id`` header return (so an operator can find it)."""
    import uuid

    request_id = uuid.uuid4().hex[:16]
    log.error(
        "%s (request id %s): %s", what, request_id, detail or f"{type(exc).__name__}: {exc}", exc_info=exc
    )
    body = {
        "error": f"internal error; see the server log for request id {request_id}",
        "request_id": request_id,
    }
    return Reply.json(body, 500, {"X-Request-Id": request_id})


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Reply.error(status, message, headers).response()


class Endpoint:
    """One API: decode -> check against the API's columns -> dispatcher -> encode.

    Called as a plain ASGI app (:meth:`asgi`): the hot path builds no Starlette Request or
    Response and passes no middleware; :class:`KappaApp` routes ``POST /<api>`` here.
    """

    def __init__(self, api: Any, runner: Any, config: ServeConfig, metrics: Metrics) -> None:
        self.api, self.name, self.metrics = api, api.name, metrics
        self.max_body = config.max_body_bytes
        # the columns and types the API declares; without a declaration each request is read
        # on its own (the first one never fixes the columns of later ones)
        self.expected: pa.Schema | None = api.input_adapter.arrow_schema()
        self.dispatcher = Dispatcher(
            runner.run,
            max_batch_rows=config.max_batch_size or api.mb_max_batch_size,
            max_latency_ms=config.max_latency_ms or api.mb_max_latency,
            enabled=config.microbatch,
            name=api.name,
        )
        self.dispatcher.observers.append(metrics.batch_observer(api.name))

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        try:
            reply = await self._reply(scope, receive)
        except _Disconnected:
            return  # the client left before sending its body: no one to answer
        except Exception as exc:  # noqa: BLE001 - a bug must still answer 500, never drop the connection
            reply = internal_error(f"API {self.name}: unexpected error", exc)
        # counted before the answer leaves: a client that reads /metrics next sees its request
        self.metrics.observe(self.name, reply.status, time.perf_counter() - start)
        await reply.send(send)

    async def _reply(self, scope: Scope, receive: Receive) -> Reply:
        try:
            batch = await self._decode(scope, receive)
        except BodyTooLarge:
            return Reply.error(413, too_large_message(self.max_body))
        except UnsupportedMediaType as exc:
            return Reply.error(415, str(exc))
        except InputError as exc:
            return Reply.error(400, str(exc))
        # request headers reach only a function that takes tasks (task.http_headers)
        scored = await self.score(batch, scope["headers"] if self.api.spec.takes_tasks else None)
        if isinstance(scored, Reply):
            return scored
        body = dumps(encode(scored.outputs, self.api.output_adapter)).encode()
        if not scored.responses:
            return Reply(200, body)
        return self._asked(body, scored.responses)

    def _asked(self, body: bytes, responses: dict[int, Any]) -> Reply:
        """The status and headers the request's rows asked for (``InferenceResult``): the first row
        that sets a status other than 200 decides it; the headers of all rows are merged in order."""
        status, headers = 200, {}
        for _, (row_status, row_headers) in sorted(responses.items()):
            status = int(row_status) if status == 200 else status
            for key, value in row_headers.items():
                name, text = str(key), str(value)
                if name.lower() in ("content-length", "transfer-encoding"):
                    continue
                try:
                    name.encode("latin-1"), text.encode("latin-1")
                except UnicodeEncodeError:
                    return internal_error(f"API {self.name}: a header it returned is not latin-1: {name!r}")
                if any(c in name + text for c in "\r\n\0") or not name or ":" in name:
                    return internal_error(f"API {self.name}: a header it returned is malformed: {name!r}")
                headers[name] = text
        if not 100 <= status <= 599:
            return internal_error(f"API {self.name}: it asked for the HTTP status {status}")
        return Reply(status, body, tuple(headers.items()))

    async def score(self, batch: pa.RecordBatch, headers: Any = None) -> Scored | Reply:
        """``batch`` through the dispatcher: its outputs, or the error reply (REST and V2 alike)."""
        try:
            scored = await self.dispatcher.submit(batch, headers)
        except Overloaded as exc:
            return Reply.error(503, str(exc), {"Retry-After": str(int(exc.retry_after))})
        except InputError as exc:
            return Reply.error(400, str(exc))
        except KappaError as exc:
            return internal_error(f"API {self.name}: the batch failed", exc)
        self.metrics.queue_wait_of(self.name).observe(scored.queue_seconds)
        if scored.errors.num_rows:
            self.metrics.rows_error.labels(self.name).inc(scored.errors.num_rows)
            failures = [client_error(f, scored.raised) for f in scored.errors.to_pylist()]
            status = min(int(f["status"]) for f in failures)
            status = status if 400 <= status < 600 else 500
            hidden = [f for f in failures if f["status"] >= 500 and f["row"] in scored.raised]
            if status >= 500 and hidden:  # an exception's text stays in the server log
                detail = "; ".join(f"row {f['row']}: {f['message']}" for f in hidden)
                return internal_error(f"API {self.name}: {len(hidden)} row(s) raised", detail=detail)
            body = {"error": failures[0]["message"], "failed_rows": failures}
            return Reply.json(body, status)
        return scored

    async def _decode(self, scope: Scope, receive: Receive) -> pa.RecordBatch:
        content_type = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1")
        if declared_too_large(scope, self.max_body):
            raise BodyTooLarge
        receive = limited(receive, self.max_body)  # counted while it streams, for every content type
        files = None
        if content_type and content_type.startswith("multipart/form-data"):
            files = await _form_files(Request(scope, receive))
            body = b""
        else:
            body = await _read_body(receive)
        batch = decode(self.api.input_adapter, content_type, body, files)
        return conform(batch, self.expected)


REJECTED_INPUT = ("ValueError: ", "TypeError: ")


def client_error(failure: dict[str, Any], raised: frozenset[int] = frozenset()) -> dict[str, Any]:
    """A row the model refused with ValueError/TypeError (NaN, wrong values) is the request's fault: 400.
    (Only rows whose function raised: a deliberate InferenceError keeps its status.)"""
    if (
        failure["status"] == 500
        and failure["row"] in raised
        and str(failure["message"]).startswith(REJECTED_INPUT)
    ):
        return {**failure, "status": 400, "message": f"the model rejected this input: {failure['message']}"}
    return failure


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _form_files(request: Request) -> list[bytes]:
    try:
        form = await request.form()
    except BodyTooLarge:
        raise
    except ClientDisconnect:
        raise _Disconnected from None
    except Exception as exc:  # noqa: BLE001 - python-multipart's errors vary by version
        raise InputError(f"the multipart body cannot be read: {exc}") from None
    files = []
    for _, value in form.multi_items():
        if hasattr(value, "read"):
            files.append(await value.read())
    return files


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
        from kappa_batch.cache import load_service

        self.service, self.manifest = load_service(self.config.bundle, self.config.digest)

    def start_endpoints(self) -> None:
        from kappa_batch.runner import BatchRunner

        for name, api in self.service.inference_apis.items():
            endpoint = Endpoint(api, BatchRunner(self.service, name), self.config, self.metrics)
            endpoint.dispatcher.start()
            self.endpoints[name] = endpoint


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
                await endpoint.asgi(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
        try:
            yield
        finally:
            state.ready = False
            state.metrics.ready.set(0)
            for endpoint in state.endpoints.values():
                await endpoint.dispatcher.close()
            state.metrics.close()

    from kappa_online import routes

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
