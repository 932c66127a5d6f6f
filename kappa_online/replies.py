"""Answers of the serving app: a JSON body with a status and headers, sent over ASGI or as a Response."""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import Send

from kappa.adapters._json import dumps

log = logging.getLogger(__name__)

# the id of the request this task answers (see answering): a 500 is logged and answered under it
_ANSWERING: ContextVar[bytes | None] = ContextVar("kappa_answering", default=None)


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

    async def send(self, send: Send, always: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Send over ASGI; ``always`` are headers every answer carries (version, request id)."""
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body))]
        if self.headers:
            extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
            if any(k == b"content-type" for k, _ in extra):
                headers = headers[1:]
            headers += [h for h in extra if h[0] not in {k for k, _ in always}]
        headers += always
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def request_id(scope: Any, reply: Reply | None = None) -> tuple[bytes, bytes]:
    """The ``X-Request-Id`` header of an answer: the reply's own (see :func:`reply_id`), else the
    request's own (when it is a sane token), else a new one."""
    if reply is not None:
        own = reply_id(reply)
        if own is not None:
            return own
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            if 0 < len(value) <= 128 and all(33 <= c < 127 for c in value):
                return b"x-request-id", value
            break
    return b"x-request-id", os.urandom(8).hex().encode()


def reply_id(reply: Reply) -> tuple[bytes, bytes] | None:
    """The ``X-Request-Id`` header a reply carries itself (a 500 names the id it was logged under)."""
    for key, value in reply.headers:
        if key.lower() == "x-request-id":
            return b"x-request-id", value.encode("latin-1")
    return None


def answering(scope: Any) -> tuple[Any, tuple[bytes, bytes]]:
    """Mark the calling task as answering the request of ``scope``, so that a 500 made while it does
    is logged and answered under the request's id (its own when it sent a sane one): feedback sent
    with that id joins the logged answer. Returns a token for :func:`answered`, and the id's header."""
    rid = request_id(scope)
    return _ANSWERING.set(rid[1]), rid


def answered(token: Any) -> None:
    _ANSWERING.reset(token)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Reply.json(data, status, headers).response()


def internal_error(what: str, exc: BaseException | None = None, detail: str = "") -> Reply:
    """A 500 that says nothing of the exception: it is logged under a request id, which the
    body and the ``X-Request-Id`` header return (so an operator can find it): the request's own
    (see :func:`answering`), else a new one."""
    import uuid

    own = _ANSWERING.get()
    request_id = own.decode("latin-1") if own is not None else uuid.uuid4().hex[:16]
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
