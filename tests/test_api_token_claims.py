"""Validly signed tokens with claims this server never issues: 401 ``invalid_token`` everywhere.

The tokens are signed with the suite's ``JWT_SECRET``, so only their claims are wrong: an
``exp`` that is a string or too large, a ``sub`` that is empty, not an id, or an id of no
account, and so on. Every bearer endpoint of the route table, the WebSocket handshake and the
refresh endpoint must refuse them with 401 — not 500, not a socket that says ``ready``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import orjson
import pytest
from jwt import PyJWS
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from handlers.base import BaseHandler
from handlers.routes import ROUTES
from messenger.ids import new_id
from tests.conftest import TEST_SECRET
from tests.support.api import Account, Api, expect_error
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient


def sign(payload: dict[str, Any]) -> str:
    """Sign any JSON payload with the suite's secret (``jwt.encode`` refuses some claims)."""
    return PyJWS().encode(json.dumps(payload).encode(), TEST_SECRET, algorithm="HS256")


def claims(user_id: Any, /, **override: Any) -> dict[str, Any]:
    """The claims this server issues for ``user_id``, with ``override`` (``DROP``: remove)."""
    now = int(time.time())
    payload = {"iss": "messenger", "aud": "messenger-clients", "sub": user_id, "iat": now,
               "exp": now + 600, "jti": uuid.uuid4().hex, "typ": "access"}
    payload.update(override)
    return {k: v for k, v in payload.items() if v is not DROP}


DROP = object()

#: Claims that make a validly signed access token invalid (``sub`` is a real user otherwise).
BAD_CLAIMS: list[Any] = [
    pytest.param({"exp": "9999999999"}, id="exp-string"),
    pytest.param({"exp": 10**30}, id="exp-huge"),
    pytest.param({"exp": 1e30}, id="exp-huge-float"),
    pytest.param({"exp": int(time.time()) + 10**7}, id="exp-beyond-ttl"),
    pytest.param({"iat": "now"}, id="iat-string"),
    pytest.param({"iat": -(10**30)}, id="iat-huge-negative"),
    pytest.param({"nbf": "0"}, id="nbf-string"),
    pytest.param({"sub": ""}, id="sub-empty"),
    pytest.param({"sub": "not-an-id"}, id="sub-not-an-id"),
    pytest.param({"sub": 42}, id="sub-number"),
    pytest.param({"sub": ["x"]}, id="sub-list"),
    pytest.param({"jti": ""}, id="jti-empty"),
    pytest.param({"typ": DROP}, id="typ-missing"),
    pytest.param({"typ": "refresh"}, id="typ-refresh"),
    pytest.param({"aud": ["messenger-clients", "x"]}, id="aud-list"),
]


def bearer_routes(some_id: str) -> list[tuple[str, str]]:
    """(method, path) of every route that takes a bearer token, ids filled with ``some_id``."""
    routes = []
    for template, handler in ROUTES:
        if not (isinstance(handler, type) and issubclass(handler, BaseHandler)):
            continue  # the WebSocket (its own test below)
        if not handler.requires_auth:
            continue
        path = re.sub(r"\{\w+\}", some_id, template)
        routes.extend((method, path) for method in handler.allowed_methods()
                      if method not in ("OPTIONS", "HEAD"))  # CORS preflight: no auth
    assert len(routes) > 10, routes
    return routes


async def bearer_call(api: Api, method: str, path: str, token: str) -> Any:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return await api.request(method, path, body, token=token)


async def handshake(server: MessengerServer, token: str) -> tuple[int, dict[str, Any]]:
    """A WebSocket handshake that must be refused: (status, JSON body)."""
    url = f"{server.base_url.replace('http://', 'ws://')}/ws?token={token}"
    try:
        conn = await websocket_connect(HTTPRequest(url, request_timeout=10))
    except HTTPClientError as exc:
        assert exc.response is not None, exc
        return exc.code, orjson.loads(exc.response.body or b"{}")
    first = await conn.read_message()
    conn.close()
    pytest.fail(f"the handshake was accepted; first frame: {first!r}")


async def world(server: MessengerServer) -> tuple[Api, Account, str]:
    api = Api(server.base_url)
    ann, bob = await api.register(), await api.register()
    chat_id = (await api.create_group(ann, bob))["id"]
    return api, ann, chat_id


# -- malformed claims ----------------------------------------------------------------------------
async def test_a_forged_token_with_good_claims_works(server: MessengerServer) -> None:
    """The control: the forging itself is right, so the refusals below are about the claims."""
    api, ann, _chat = await world(server)
    resp = await api.get("/api/users/me", token=sign(claims(ann.id)))
    assert resp.status == 200, resp.body
    assert resp.json["id"] == ann.id


@pytest.mark.parametrize("override", BAD_CLAIMS)
async def test_malformed_claims_are_401_on_every_bearer_endpoint(
    server: MessengerServer, override: dict[str, Any]
) -> None:
    api, ann, chat_id = await world(server)
    token = sign(claims(ann.id, **override))
    for method, path in bearer_routes(chat_id):
        expect_error(await bearer_call(api, method, path, token), 401, "invalid_token")


@pytest.mark.parametrize("override", BAD_CLAIMS)
async def test_malformed_claims_are_401_at_the_websocket_handshake(
    server: MessengerServer, override: dict[str, Any]
) -> None:
    _api, ann, _chat = await world(server)
    status, body = await handshake(server, sign(claims(ann.id, **override)))
    assert (status, body["error"]["code"]) == (401, "invalid_token"), body


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"exp": "9999999999"}, id="exp-string"),
        pytest.param({"exp": 10**30}, id="exp-huge"),
        pytest.param({"fam": ""}, id="fam-empty"),
        pytest.param({"fam": 7}, id="fam-number"),
        pytest.param({"fam": DROP}, id="fam-missing"),
        pytest.param({"sub": ""}, id="sub-empty"),
        pytest.param({"typ": "access"}, id="typ-access"),
    ],
)
async def test_malformed_claims_in_a_refresh_token_are_401(
    server: MessengerServer, override: dict[str, Any]
) -> None:
    api, ann, _chat = await world(server)
    token = sign(claims(ann.id, **{"typ": "refresh", "fam": uuid.uuid4().hex, **override}))
    resp = await api.post("/api/auth/refresh", {"refresh_token": token})
    expect_error(resp, 401, "invalid_token")


# -- a well-formed sub of no account ---------------------------------------------------------------
async def test_token_of_no_account_cannot_create_chats_or_uploads(
    server: MessengerServer,
) -> None:
    """The two services that store rows pointing at the caller refuse a caller of no account
    themselves (SQLite's foreign keys would fail; MongoDB would store a dangling owner)."""
    api, ann, _chat = await world(server)
    token = sign(claims(new_id()))
    resp = await api.post("/api/chats", {"type": "group", "member_ids": []}, token=token)
    expect_error(resp, 401, "invalid_token")
    resp = await api.post("/api/chats", {"type": "direct", "member_ids": [ann.id]}, token=token)
    expect_error(resp, 401, "invalid_token")
    resp = await api.post(
        "/api/uploads", {"filename": "a.txt", "content_type": "text/plain", "size": 3},
        token=token,
    )
    expect_error(resp, 401, "invalid_token")


async def test_token_of_no_account_is_401_on_every_bearer_endpoint(
    server: MessengerServer,
) -> None:
    """Needs ``KnownUsers.exists`` in the bearer authentication (handlers/base.py)."""
    api, _ann, chat_id = await world(server)
    token = sign(claims(new_id()))
    for method, path in bearer_routes(chat_id):
        expect_error(await bearer_call(api, method, path, token), 401, "invalid_token")


async def test_token_of_no_account_is_refused_at_the_websocket_handshake(
    server: MessengerServer,
) -> None:
    """Needs ``KnownUsers.exists`` in the WebSocket handshake (handlers/ws.py)."""
    status, body = await handshake(server, sign(claims(new_id())))
    assert (status, body["error"]["code"]) == (401, "invalid_token"), body


async def test_token_of_a_real_account_still_opens_a_websocket(server: MessengerServer) -> None:
    _api, ann, _chat = await world(server)
    client = await WsClient.connect(server.base_url, sign(claims(ann.id)))
    client.conn.close()
