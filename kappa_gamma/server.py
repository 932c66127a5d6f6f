"""The registry server: one Starlette app (REST API, docs, web UI) run by uvicorn.

Needs the online extra (starlette, uvicorn): ``pip install 'kappa-engine[online]'``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from kappa.errors import (
    AccessDenied,
    BundleNotFound,
    InputError,
    KappaError,
    MetadataUnavailable,
    RunConflict,
    RunNotFound,
    VersionExists,
    missing_dependency,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)
DEFAULT_PORT = 50051
CONFIG_ENV = "KAPPA_GAMMA_SERVER"  # the server's options, for uvicorn's worker processes
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Kappa Gamma registry API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><noscript><p>The API is described in <a href="/openapi.json">/openapi.json</a>.</p></noscript>
<div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>"""


@dataclass(frozen=True)
class ServerOptions:
    db_url: str | None = None
    repo_base_url: str | None = None
    allow_anonymous_read: bool = False
    ui: bool = True

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServerOptions:
        return cls(**json.loads(os.environ.get(CONFIG_ENV) or "{}"))


def status_of(exc: KappaError) -> int:
    from kappa_gamma.access import Unauthenticated
    from kappa_gamma.api import PayloadTooLarge, StoreFailure, UploadStalled

    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, AccessDenied):
        return 403
    if isinstance(exc, BundleNotFound | RunNotFound):
        return 404
    if isinstance(exc, VersionExists | RunConflict):
        return 409
    if isinstance(exc, UploadStalled):
        return 408
    if isinstance(exc, StoreFailure | MetadataUnavailable):
        return 503
    if isinstance(exc, PayloadTooLarge):
        return 413
    from kappa.errors import BundleError, RepositoryError

    if isinstance(exc, InputError | BundleError | RepositoryError):
        return 400
    return 500


def build_app(options: ServerOptions) -> Starlette:
    """The registry app over the repository ``options`` name (the settings' one by default)."""
    try:
        from starlette.applications import Starlette
        from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
        from starlette.routing import Mount, Route
    except ImportError:
        raise missing_dependency("starlette", "online", "the registry server") from None

    from kappa.redact import redact
    from kappa.repository.repository import Repository
    from kappa.settings import KappaSettings
    from kappa_gamma import api, openapi
    from kappa_gamma.access import Gate
    from kappa_gamma.tokens import TokenStore

    overrides = {"repository.db_url": options.db_url, "repository.base_url": options.repo_base_url}
    # the server is the repository: it never forwards to another registry
    settings = KappaSettings.load(overrides=overrides, environ={**os.environ, "KAPPA_GAMMA_URL": ""})
    settings = _without_registry(settings)
    repository = Repository(settings)
    gate = Gate(TokenStore(settings.db_url, settings.db_reconnect_seconds), options.allow_anonymous_read)
    registry = api.Registry(repository, gate, settings.home / "gamma" / "uploads")

    async def kappa_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KappaError)
        status = status_of(exc)
        message = redact(str(exc))
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, message)
        if isinstance(exc, MetadataUnavailable):  # its text names the database: for the server's log only
            message = api.DATABASE_AWAY
        headers = (
            {"WWW-Authenticate": "Bearer"}
            if status == 401
            else {"Retry-After": "5"}
            if status == 503
            else None
        )
        if request.url.path.startswith("/ui") and status in (401, 403):
            from kappa_gamma.ui import login_page

            return login_page(request, message, status)
        return JSONResponse(
            {"error": message, "kind": type(exc).__name__}, status_code=status, headers=headers
        )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi.document())

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    routes: list[Any] = [
        Route("/healthz", healthz),
        Route("/livez", healthz),
        Route("/openapi.json", openapi_json),
        Route("/docs", docs),
        *api.routes(),
    ]
    static = _swagger_files()
    if static is not None:
        from starlette.staticfiles import StaticFiles

        routes.append(Mount("/docs/static", StaticFiles(directory=static), name="swagger"))
    if options.ui:
        from starlette.responses import RedirectResponse

        from kappa_gamma import ui

        async def home(request: Request) -> Response:
            return RedirectResponse("/ui", status_code=307)

        routes.extend([Route("/", home), *ui.routes()])
    app = Starlette(routes=routes, exception_handlers={KappaError: kappa_error})
    app.state.registry = registry
    return app


def _without_registry(settings: Any) -> Any:
    from dataclasses import replace

    return replace(settings, gamma_url=None, gamma_token=None)


def _swagger_files() -> str | None:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return str(swagger_ui_path)


def app_factory() -> Starlette:
    """For uvicorn's worker processes (``--workers N``): options come from the environment."""
    return build_app(ServerOptions.from_env())


def serve(options: ServerOptions, host: str, port: int, workers: int = 1, ui_port: int | None = None) -> None:
    """Run the registry until SIGINT/SIGTERM; ``ui_port`` also serves the same app on a second port."""
    try:
        import uvicorn
    except ImportError:
        raise missing_dependency("uvicorn", "online", "the registry server") from None
    app = build_app(options)  # a bad database URL or store fails here, once, with a clear line
    from kappa.http_serve import run  # the asyncio loop, not uvloop: see there

    if workers > 1:
        os.environ[CONFIG_ENV] = options.to_env()
        run(
            "kappa_gamma.server:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
        return
    if ui_port is None:
        run(app, host=host, port=port, log_level="warning")
        return
    import asyncio  # two ports: asyncio's loop serves both

    servers = [
        uvicorn.Server(uvicorn.Config(app, host=host, port=p, log_level="warning")) for p in (port, ui_port)
    ]

    async def both() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(both())
