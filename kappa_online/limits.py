"""Request bodies are counted while they stream in: no route reads more than the limit.

``limited(receive, limit)`` raises :class:`BodyTooLarge` on the message that crosses
``limit`` bytes, whatever the content type (JSON, CSV, multipart, chunked or not);
:class:`BodyLimit` (pure ASGI middleware) answers 413 for the routes behind it.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """The request body passed the server's ``--max-body-bytes``."""


def too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes (--max-body-bytes)"


def declared_too_large(scope: Scope, limit: int) -> bool:
    for key, value in scope["headers"]:
        if key == b"content-length":
            return bool(value.isdigit() and int(value) > limit)
    return False


def limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises :class:`BodyTooLarge` once more than ``limit`` body bytes arrived."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return wrapped


class BodyLimit:
    """413 for any request whose body (declared or streamed) passes ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declared_too_large(scope, self.limit):
            await self._refuse(send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited(receive, self.limit), tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": too_large_message(self.limit)}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
