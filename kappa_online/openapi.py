"""The OpenAPI document of a bundle's HTTP API: served at ``/openapi.json`` by ``kappa serve``
and printed by ``kappa open-api-spec``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def openapi_document(manifest: Any, apis: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAPI 3 for a bundle's APIs (request and response shapes follow the adapters)."""
    paths: dict[str, Any] = {}
    for name, api in apis.items():
        paths[f"/{name}"] = {
            "post": {
                "summary": api.doc.strip().splitlines()[0]
                if api.doc.strip()
                else f"{name} ({api.input_adapter.describe()})",
                "description": api.doc or "",
                "requestBody": {"required": True, "content": api.input_adapter.openapi_request()},
                "responses": {
                    "200": {
                        "description": "one prediction per input row",
                        "content": {"application/json": {}},
                    },
                    "400": {"description": "the input does not fit the API"},
                    "413": {"description": "the body is larger than the server accepts"},
                    "415": {"description": "unsupported content type"},
                    "503": {"description": "over capacity or not ready; see Retry-After"},
                },
            }
        }
    for path, summary in (
        ("/metadata", "the bundle manifest"),
        ("/healthz", "ready to serve"),
        ("/livez", "the process is alive"),
        ("/readyz", "ready to serve"),
        ("/metrics", "Prometheus metrics"),
    ):
        paths[path] = {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": manifest.name, "version": manifest.version, "description": manifest.doc or ""},
        "paths": paths,
    }
