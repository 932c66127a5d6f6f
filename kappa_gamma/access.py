"""Who may do what on the registry server: Bearer tokens, the UI's cookie, anonymous reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kappa.errors import AccessDenied
from kappa_gamma.tokens import TokenStore, allows

if TYPE_CHECKING:
    from starlette.requests import Request

COOKIE = "kappa_gamma_token"


class Unauthenticated(AccessDenied):
    """No usable token came with the request (HTTP 401)."""


class Forbidden(AccessDenied):
    """The token's scope is too narrow (HTTP 403)."""


@dataclass(frozen=True)
class Gate:
    tokens: TokenStore
    allow_anonymous_read: bool = False

    async def require(self, request: Request, needed: str) -> str:
        """The scope the request holds, if it covers ``needed``; else Unauthenticated or Forbidden.

        The UI's cookie counts for reads only (a page cannot be tricked into writing). A token
        not checked lately is looked up in the threadpool: a database that is slow or away (its
        reconnect window) holds that request, never the server's event loop.
        """
        token = _bearer(request)
        if token is None and request.method in ("GET", "HEAD") and needed == "read":
            token = request.cookies.get(COOKIE) or None
        if token is None:
            if needed == "read" and self.allow_anonymous_read:
                return "anonymous"
            raise Unauthenticated(
                "this registry needs a token: send `Authorization: Bearer <token>` "
                "(clients: the gamma_service.token setting, or KAPPA_GAMMA_TOKEN)"
            )
        try:
            info = self.tokens.remembered(token)
            if info is None:
                from starlette.concurrency import run_in_threadpool

                info = await run_in_threadpool(self.tokens.check, token)
        except AccessDenied as exc:
            raise Unauthenticated(f"{exc}; ask the registry's admin for a token") from None
        if not allows(info.scope, needed):
            raise Forbidden(
                f"token {info.token_id} has scope {info.scope!r}; this needs {needed!r} "
                f"(`kappa gamma token create --scope {needed}` beside the server)"
            )
        return info.scope


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None
