"""Service endpoints: root, liveness, readiness, unknown routes and wrong methods."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from tests.support.api import Api, expect_error, is_json_response
from tests.support.processes import ROOT

BACKEND_NAMES = {"sqlite": "sqlite", "mongo": "mongodb"}


async def test_root_names_app_and_env(server) -> None:
    resp = await Api(server.base_url).get("/")
    assert resp.status == 200
    assert is_json_response(resp)
    assert resp.json == {"app": "web-messenger", "env": "test"}


async def test_healthz_ok(server) -> None:
    resp = await Api(server.base_url).get("/api/healthz")
    assert resp.status == 200
    assert is_json_response(resp)
    assert resp.json == {"status": "ok"}


async def test_the_running_server_serves_its_openapi_document(server) -> None:
    api = Api(server.base_url)
    resp = await api.get("/api/openapi.json")
    assert resp.status == 200
    assert is_json_response(resp)
    assert resp.body == (ROOT / "openapi.json").read_bytes()  # the committed document, exactly
    validate(resp.json)  # a valid OpenAPI 3.1 document
    etag = resp.header("ETag")
    assert etag
    again = await api.get("/api/openapi.json", headers={"If-None-Match": etag})
    assert (again.status, again.body) == (304, b"")
    other = await api.get("/api/openapi.json", headers={"If-None-Match": '"stale"'})
    assert other.status == 200 and other.body == resp.body


async def test_readyz_reports_the_backend(server) -> None:
    resp = await Api(server.base_url).get("/api/readyz")
    assert resp.status == 200, resp.body
    assert is_json_response(resp)
    assert resp.json == {"status": "ok", "checks": {BACKEND_NAMES[server.backend]: "ok",
                                                    "in-process": "ok", "node": "ok"}}


@pytest.mark.parametrize(
    "path", ["/api/nope", "/nope", "/api/users/me/extra", "/api/chats/x/y/z", "/api"]
)
async def test_unknown_route_is_404_json(server, path: str) -> None:
    api = Api(server.base_url)
    expect_error(await api.get(path), 404, "not_found")
    expect_error(await api.post(path, {}), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/healthz", "GET, OPTIONS"),
        ("POST", "/api/healthz", "GET, OPTIONS"),
        ("PUT", "/api/readyz", "GET, OPTIONS"),
        ("GET", "/api/auth/register", "POST, OPTIONS"),
        ("GET", "/api/auth/login", "POST, OPTIONS"),
        ("GET", "/api/auth/refresh", "POST, OPTIONS"),
        ("DELETE", "/api/users/me", "GET, PATCH, OPTIONS"),
        ("PATCH", "/api/chats", "GET, POST, OPTIONS"),
        ("TRACE", "/api/chats", "GET, POST, OPTIONS"),
    ],
)
async def test_wrong_method_is_405_json(server, method: str, path: str, allow: str) -> None:
    api = Api(server.base_url)
    account = await api.register()
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    # Authenticated, so the only thing wrong with the request is its method.
    resp = await api.request(method, path, body=body, token=account.access_token)
    expect_error(resp, 405, "method_not_allowed")
    assert resp.header("Allow") == allow  # RFC 9110: a 405 lists what is allowed
