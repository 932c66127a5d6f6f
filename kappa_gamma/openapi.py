"""The registry API's own OpenAPI document (served at ``/openapi.json``, shown at ``/docs``)."""

from __future__ import annotations

from typing import Any

from kappa._version import __version__

_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "A version, or `latest` (reads only)",
}
_ERRORS = {
    "400": {"description": "Bad input; the body says what is wrong and what to do"},
    "401": {"description": "No token, or an unknown one"},
    "403": {"description": "The token's scope is too narrow"},
    "404": {"description": "No such bundle or run"},
}


def _query(name: str, kind: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind},
        "description": description,
    }


def _op(summary: str, scope: str, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Needs a token with scope `{scope}` or wider.",
        "security": [{"bearer": [scope]}],
        "responses": {"200": {"description": "OK"}, **_ERRORS},
    }
    op.update(extra)
    return op


def document() -> dict[str, Any]:
    bundle = "/api/v1/bundles/{name}/{version}"
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Kappa Gamma registry",
            "version": __version__,
            "description": "Bundles (versioned model services) and the scoring runs that used them. "
            "Authenticate with `Authorization: Bearer <token>` (`kappa gamma token create`).",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/api/v1/info": {"get": _op("Server version and bundle count", "read")},
            "/api/v1/bundles": {
                "get": _op(
                    "List ready bundles, newest first",
                    "read",
                    parameters=[
                        _query("name", "string", "Only versions of this service"),
                        _query("labels", "string", "Label selector, e.g. `stage In (prod, qa), team=x`"),
                        _query("limit", "integer", "At most this many"),
                        _query("offset", "integer", "Skip this many"),
                        _query("order_by", "string", "created_at, name or version"),
                        _query("ascending", "boolean", "Oldest (or A-Z) first"),
                    ],
                )
            },
            bundle: {
                "parameters": [_NAME, _VERSION],
                "get": _op("One version's record and manifest", "read"),
                "put": _op(
                    "Upload a version as a tar stream (streamed, verified, visible once complete)",
                    "write",
                    parameters=[
                        {
                            "name": "X-Kappa-Digest",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "The bundle's digest, as its kappa.yml records it",
                        }
                    ],
                    requestBody={
                        "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}
                    },
                    responses={
                        "201": {"description": "Stored"},
                        "409": {"description": "The version exists; versions are never reused"},
                        "413": {"description": "Past import.max_bytes"},
                        **_ERRORS,
                    },
                ),
                "delete": _op("Delete a version", "admin"),
            },
            bundle + "/archive": {
                "parameters": [_NAME, _VERSION],
                "get": _op(
                    "Download a version as a tar stream",
                    "read",
                    responses={
                        "200": {
                            "description": "The bundle's files",
                            "content": {
                                "application/x-tar": {"schema": {"type": "string", "format": "binary"}}
                            },
                        },
                        **_ERRORS,
                    },
                ),
            },
            bundle + "/labels": {
                "parameters": [_NAME, _VERSION],
                "get": _op("A version's labels", "read"),
                "put": _op(
                    "Replace a version's labels",
                    "write",
                    requestBody={
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        }
                                    },
                                },
                                "example": {"labels": {"stage": "prod"}},
                            }
                        }
                    },
                ),
            },
            "/api/v1/runs": {
                "get": _op(
                    "Scoring runs, newest first",
                    "read",
                    parameters=[
                        _query("name", "string", "Only runs of this service"),
                        _query("version", "string", "Only runs of this version"),
                        _query("limit", "integer", "At most this many (1000 at most)"),
                        _query("offset", "integer", "Skip this many"),
                    ],
                ),
                "post": _op(
                    "Record a scoring run's report",
                    "write",
                    requestBody={"content": {"application/json": {"schema": {"type": "object"}}}},
                    responses={"201": {"description": "Recorded"}, **_ERRORS},
                ),
            },
            "/api/v1/runs/{run_id}": {
                "parameters": [
                    {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "get": _op("One scoring run's report", "read"),
            },
        },
    }
