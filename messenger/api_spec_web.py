"""The web part of the OpenAPI document: the browser client under ``/app/`` and the API docs
page ``/api/docs`` (API_CONTRACT.md §12) — HTML pages and their static files, no JSON API.

Kept apart from ``api_spec`` like the email part (whose ``/verify-email`` pages are documented
the same way); ``build_spec`` merges these paths.
"""

from __future__ import annotations

from typing import Any

from messenger import api_spec_parts as parts

TAG = "web"


def _file_param(example: str) -> dict[str, Any]:
    return {
        "name": "path",
        "in": "path",
        "required": True,
        "description": "A file name of the folder served (one path segment).",
        "schema": {"type": "string", "minLength": 1},
        "example": example,
    }


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _file(description: str) -> dict[str, Any]:
    return {
        "description": description + " `Cache-Control: no-cache` with an ETag.",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }


def _page(operation_id: str, summary: str, description: str) -> dict[str, Any]:
    return parts.operation(
        operation_id, TAG, summary,
        {"200": _html("The page (static; its scripts come from this server only).")},
        auth=False, description=description,
    )


def _files(operation_id: str, summary: str, description: str, example: str) -> dict[str, Any]:
    return parts.operation(
        operation_id, TAG, summary,
        {
            "200": _file("The file, with its type (`text/javascript`, `text/css`, ...)."),
            **parts.error_responses("not_found"),
        },
        auth=False, description=description, parameters=[_file_param(example)],
    )


def web_paths() -> dict[str, Any]:
    return {
        "/app": {
            "get": parts.operation(
                "webClientRedirect", TAG, "Redirect to the web client",
                {
                    "301": {
                        "description": "To `/app/` (the page's relative URLs resolve there).",
                        "headers": {"Location": {"schema": {"type": "string"},
                                                 "description": "`/app/`"}},
                    }
                },
                auth=False,
            )
        },
        "/app/": {
            "get": _page(
                "webClient", "The web client",
                "A browser client of this API: plain HTML, CSS and ES modules, nothing loaded "
                "from elsewhere. It keeps its tokens in localStorage and talks to the endpoints "
                "of this document and to /ws.",
            )
        },
        "/app/{path}": {
            "get": _files(
                "webClientFile", "A file of the web client",
                "Its modules, styles and icons; any other name is 404 `not_found`.",
                "main.js",
            )
        },
        "/api/docs": {
            "get": _page(
                "apiDocs", "This API's documentation",
                "Swagger UI (vendored, served by this server) showing /api/openapi.json.",
            )
        },
        "/api/docs/{path}": {
            "get": _files(
                "apiDocsFile", "A file of the documentation page",
                "The Swagger UI bundle and stylesheet and the page's own script.",
                "swagger-ui.css",
            )
        },
    }
