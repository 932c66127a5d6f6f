"""One API over HTTP: the request's body -> its adapter's decoder -> the dispatcher -> JSON rows.

Called as a plain ASGI app: the hot path builds no Starlette Request or Response and passes
no middleware. How a failed row answers depends on its kind
(:data:`kappa.inference.ErrorKind`), never on its message: ``rejected`` rows (the model
raised ``ValueError``/``TypeError``) are the request's fault (400); ``raised`` and
``invalid_output`` rows are the server's (500, details only in the log); ``discarded`` and
``unreadable`` rows keep the status the API or the reader gave them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send

from kappa.adapters._json import dumps
from kappa.errors import InputError, KappaError, UnsupportedMediaType
from kappa_batch.runner import BatchRunner
from kappa_batch.scoring import score_batch
from kappa_online.config import ServeConfig
from kappa_online.dispatcher import Dispatcher, Overloaded, Scored
from kappa_online.limits import BodyTooLarge, declared_too_large, limited, too_large_message
from kappa_online.metrics import Metrics
from kappa_online.payload_log import Prediction
from kappa_online.replies import Reply, answered, answering, internal_error, reply_id

HIDDEN = ("raised", "invalid_output")  # the server's fault: the message stays in the log


class Endpoint:
    """One API: decode -> dispatcher -> encode; :class:`kappa_online.app.KappaApp` routes
    ``POST /<api>`` here."""

    def __init__(
        self,
        api: Any,
        runner: BatchRunner,
        config: ServeConfig,
        metrics: Metrics,
        version: str = "",
        payload_log: Any = None,
    ) -> None:
        self.api, self.name, self.metrics, self.runner = api, api.name, metrics, runner
        self.max_body = config.max_body_bytes
        self.version = version  # the bundle's NAME:VERSION, sent back as X-Kappa-Version
        self._version_header = (b"x-kappa-version", version.encode("latin-1", "replace"))
        self.in_flight = 0  # requests inside this endpoint (a swapped-out version waits for them)
        self.sample: pa.RecordBatch | None = None  # the latest decoded request: warms a successor
        self.payload_log: Any = payload_log  # kappa_online.payload_log.PayloadLog, with --log-predictions

        def score(table: Any, headers: Any = None) -> Any:
            return score_batch(runner, table, headers=headers)

        self.dispatcher = Dispatcher(
            score,
            max_batch_rows=config.max_batch_size or api.mb_max_batch_size,
            max_latency_ms=config.max_latency_ms or api.mb_max_latency,
            enabled=config.microbatch,
            name=api.name,
        )
        self.dispatcher.observers.append(metrics.batch_observer(api.name))

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        self.in_flight += 1
        token, rid = answering(scope)
        try:
            seen: list[Any] = []  # this request's decoded batch and answer rows, for the payload log
            try:
                reply = await self._reply(scope, receive, seen)
            except _Disconnected:
                return  # the client left before sending its body: no one to answer
            except Exception as exc:  # noqa: BLE001 - a bug must still answer 500, never drop the connection
                reply = internal_error(f"API {self.name}: unexpected error", exc)
            # counted before the answer leaves: a client that reads /metrics next sees its request
            seconds = time.perf_counter() - start
            self.observe(reply.status, seconds)
            rid = reply_id(reply) or rid
            await reply.send(send, (self._version_header, rid))
            self.log(rid, reply.status, seconds, seen)
        finally:
            answered(token)
            self.in_flight -= 1

    def observe(self, status: int, seconds: float) -> None:
        """One answered request in the API's and the version's metrics (REST and V2 alike)."""
        self.metrics.observe(self.name, status, seconds)
        self.metrics.observe_version(self.version, status, seconds)

    def headers(self, rid: tuple[bytes, bytes]) -> dict[str, str]:
        """The version and request id an answer carries, as a Starlette response's headers."""
        return {"x-kappa-version": self._version_header[1].decode("latin-1"), "x-request-id": rid[1].decode()}

    def log(self, rid: tuple[bytes, bytes], status: int, seconds: float, seen: list[Any]) -> None:
        """The request and its answer rows to the prediction log, when there is one (a body that
        did not decode has no rows to log)."""
        if self.payload_log is None or not seen:
            return
        rows = seen[1] if len(seen) > 1 else None
        self.payload_log.record(
            Prediction(
                rid[1].decode("latin-1"),
                time.time(),
                self.version,
                self.name,
                status,
                seconds * 1000,
                seen[0],
                rows,
            )
        )

    async def _reply(self, scope: Scope, receive: Receive, seen: list[Any]) -> Reply:
        refused = self.dispatcher.refusal()
        if refused is not None:  # before the body is decoded: refusing costs little
            return shed(refused)
        try:
            batch = await self._decode(scope, receive)
        except BodyTooLarge:
            return Reply.error(413, too_large_message(self.max_body))
        except UnsupportedMediaType as exc:
            return Reply.error(415, str(exc))
        except InputError as exc:
            return Reply.error(400, str(exc))
        seen.append(batch)
        # request headers reach only a function that takes tasks (task.http_headers)
        scored = await self.score(batch, scope["headers"] if self.api.spec.takes_tasks else None)
        if isinstance(scored, Reply):
            return scored
        result = scored.rows.result
        self.sample = batch  # answered: a request fit to warm a successor with
        seen.append(result.outputs)
        body = dumps(self.api.output_adapter.to_json_rows(result.outputs)).encode()
        if not result.responses:
            return Reply(200, body)
        return self._asked(body, dict(result.responses))

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
            return shed(exc)
        except InputError as exc:
            return Reply.error(400, str(exc))
        except KappaError as exc:
            return internal_error(f"API {self.name}: the batch failed", exc)
        self.metrics.queue_wait_of(self.name).observe(scored.queue_seconds)
        errors = scored.rows.result.errors
        if errors.num_rows:
            self.metrics.rows_error.labels(self.name).inc(errors.num_rows)
            rows = errors.to_pylist()
            failures = [failure(e) for e in rows]
            status = min(f["status"] for f in failures)
            status = status if 400 <= status < 600 else 500
            hidden = [e for e in rows if e["kind"] in HIDDEN]
            if hidden:  # an exception's text stays in the server log, whatever the answer's status
                detail = "; ".join(f"row {e['row']}: {e['message']}" for e in hidden)
                logged = internal_error(f"API {self.name}: {len(hidden)} row(s) raised", detail=detail)
                if status >= 500:
                    return logged
                said = json.loads(logged.body)["error"]
                failures = [
                    {**f, "message": said} if e["kind"] in HIDDEN else f
                    for f, e in zip(failures, rows, strict=True)
                ]
            return Reply.json({"error": failures[0]["message"], "failed_rows": failures}, status)
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
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        batch: pa.RecordBatch = self.api.input_adapter.from_http(body, media_type, files)
        return batch


def shed(refused: Overloaded) -> Reply:
    """503 with ``Retry-After``: the client may come back, the server chose not to queue it."""
    return Reply.error(503, str(refused), {"Retry-After": str(int(refused.retry_after))})


def failure(error: dict[str, Any]) -> dict[str, Any]:
    """A failed row as the HTTP answer lists it: a row the model refused with ValueError/TypeError
    (NaN, wrong values) is the request's fault (400)."""
    row = {"row": error["row"], "status": int(error["status"]), "message": error["message"]}
    if error["kind"] == "rejected":
        return {**row, "status": 400, "message": f"the model rejected this input: {error['message']}"}
    return row


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
