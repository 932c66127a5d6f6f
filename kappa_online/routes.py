"""The routes of the serving app besides the API endpoints' own work (see :mod:`kappa_online.app`)."""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from kappa import threads
from kappa_online import v2
from kappa_online.openapi import openapi_document
from kappa_online.replies import error, json_response

if TYPE_CHECKING:
    from kappa_online.state import State

FEEDBACK_BYTES = 64 * 1024
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui"}});</script>
</body></html>"""


def build(state: State) -> list[BaseRoute]:
    async def not_ready() -> Response:
        if state.failed:
            return error(503, f"the bundle failed to load: {state.failed}")
        return error(503, "the model is loading", {"Retry-After": "1"})

    async def api(request: Request) -> Response:
        name = request.path_params["api"]
        endpoint = state.endpoints.get(name)
        if endpoint is None:
            if not state.ready:
                return await not_ready()
            return error(404, f"no API {name!r}; this service has {sorted(state.endpoints)}")
        # a ready server's known APIs never get here (KappaApp sends them to the endpoint);
        # shutting down: finish what is queued, take nothing new
        return error(503, "the server is shutting down", {"Retry-After": "1"})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok") if state.ready else await not_ready()

    async def livez(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def metadata(request: Request) -> Response:
        if state.manifest is None:
            return await not_ready()
        return json_response(_metadata(state))

    async def metrics(request: Request) -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    async def openapi(request: Request) -> Response:
        if state.manifest is None:
            return await not_ready()
        apis = {name: endpoint.api for name, endpoint in state.endpoints.items()}
        return json_response(openapi_document(state.manifest, apis))

    async def docs(request: Request) -> Response:
        title = state.manifest.tag if state.manifest else "Kappa"
        return HTMLResponse(DOCS_PAGE.format(title=title))

    async def feedback(request: Request) -> Response:
        """``{"request_id": ..., ...}``: what came true for an answered request, beside the predictions."""
        if state.payload_log is None:
            return error(
                404, "feedback is logged beside the predictions: start kappa serve with --log-predictions URL"
            )
        raw = await request.body()
        if len(raw) > FEEDBACK_BYTES:
            return error(413, f"a feedback body is at most {FEEDBACK_BYTES} bytes")
        try:
            item = json.loads(raw or b"null")
        except (ValueError, RecursionError):
            return error(400, 'the body is not JSON; send {"request_id": "...", ...}')
        rid = item.get("request_id") if isinstance(item, dict) else None
        if not isinstance(rid, str) or not 0 < len(rid) <= 128:
            return error(
                400, 'send a JSON object with the answered request\'s "request_id" (its X-Request-Id)'
            )
        state.payload_log.record_feedback(item, len(raw))
        return json_response({"accepted": rid}, 202)

    async def reload(request: Request) -> Response:
        """Look for a newer version now, as ``--watch`` does on its timer."""
        expected = state.config.admin_token
        if expected is None or state.swapper is None:
            return error(
                404,
                "admin routes are off: serve NAME:latest with KAPPA_SERVE_ADMIN_TOKEN set "
                "(a fixed version or a folder is never swapped)",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            return error(401, "send the admin token: Authorization: Bearer <KAPPA_SERVE_ADMIN_TOKEN>")
        if not state.ready:
            return await not_ready()
        result = await state.swapper.check()
        if state.config.reload_signal:  # --workers N: the others look too
            from kappa_online.swap import SIGNAL_POLL, announce

            failed = await asyncio.get_running_loop().run_in_executor(
                None, announce, state.config.reload_signal
            )
            result["workers"] = (
                f"not told: {failed}; they find it on their own --watch timer"
                if failed
                else f"every worker looks for a newer version within {SIGNAL_POLL} s"
            )
        return json_response(result)

    routes: list[BaseRoute] = [
        Route("/admin/reload", reload, methods=["POST"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/{api:str}", api, methods=["POST"]),  # unknown APIs, and any API while not ready
        Route("/healthz", healthz),
        Route("/livez", livez),
        Route("/readyz", healthz),
        Route("/metadata", metadata),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
        Route("/docs", docs),
        Mount("/docs/static", StaticFiles(directory=_swagger_files()), name="swagger"),
        *v2.routes(state),
        Route("/", _static_index(state)),
        Mount("/", _StaticContent(state), name="web"),
    ]
    return routes


def _swagger_files() -> str:
    from swagger_ui_bundle import swagger_ui_path

    return str(swagger_ui_path)


def _metadata(state: State) -> dict[str, Any]:
    manifest: dict[str, Any] = state.manifest.to_dict()
    for artifact in manifest.get("artifacts", []):
        artifact.setdefault("metadata", {})
    manifest["serving"] = state.serving()  # the version(s) answering requests now
    if state.canary is not None:
        manifest["canary"] = {"version": state.canary[1].tag, "weight": state.config.canary_weight}
    manifest["threads_per_worker"] = threads.current()  # BLAS/OpenMP threads of this server process
    return manifest


def _static_index(state: State) -> Any:
    async def index(request: Request) -> Response:
        folder = _web_folder(state)
        if folder is not None and (folder / "index.html").is_file():
            return HTMLResponse((folder / "index.html").read_text())
        if state.manifest is None:
            return PlainTextResponse("Kappa: loading", status_code=503)
        apis = ", ".join(f"POST /{name}" for name in sorted(state.endpoints))
        return PlainTextResponse(f"{state.manifest.tag}: {apis}; docs at /docs")

    return index


def _web_folder(state: State) -> Path | None:
    manifest = state.manifest
    if manifest is None or not manifest.web_static_content:
        return None
    from kappa.bundle.load import resolve

    folder = resolve(state.config.bundle) / manifest.web_static_content
    return folder if folder.is_dir() else None


class _StaticContent:
    """The bundle's ``@web_static_content`` folder (known only once the bundle is loaded)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.files: StaticFiles | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.files is None:
            folder = _web_folder(self.state)
            if folder is None:
                await PlainTextResponse("not found", status_code=404)(scope, receive, send)
                return
            self.files = StaticFiles(directory=str(folder), html=True)
        await self.files(scope, receive, send)
