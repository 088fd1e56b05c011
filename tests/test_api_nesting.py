"""Deeply nested JSON (``JSON_MAX_DEPTH``) against the running server, on both stores.

A body or a WebSocket frame nested deeper than the limit is a 422 ``validation_error`` (an
``error`` frame, the socket staying open) — at any depth, whether orjson can read it (up to
1,024 levels) or not, on unauthenticated and authenticated endpoints alike. Never a 500.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import server_env
from tests.support.api import Api
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient

LEVELS = [33, 1000, 5000, 100_000]
LIMIT_MESSAGE = "JSON is nested deeper than 32 levels"


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def deep_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    """Bodies up to 1 MiB, so 100,000 levels fit and reach the JSON check (not the 413)."""
    tmp_dir = str(tmp_path_factory.mktemp(f"deep-{request.param}"))
    env = {**server_env(request.param, request, tmp_dir), "MAX_BODY_BYTES": "1048576"}
    proc = MessengerServer(env).start()
    proc.backend = request.param
    yield proc
    proc.stop()


def nested(levels: int, shape: str) -> bytes:
    """A JSON object whose nesting is ``levels`` deep in total (the top object is level 1)."""
    if shape == "objects":  # {"email": {"email": … "x" …}}
        return b'{"email":' * levels + b'"x"' + b"}" * levels
    if shape == "arrays":  # {"email": [[[…]]], "password": …}
        inner = levels - 1
        return b'{"password":"correct horse","email":' + b"[" * inner + b"]" * inner + b"}"
    return b'{"email":' + b"[" * (levels - 1)  # unclosed: not even valid JSON


def assert_too_deep(status: int, body: dict, what: str) -> None:
    assert status == 422, f"{what}: {status} {body}"
    error = body["error"]
    assert (error["code"], error["field"], error["message"]) == (
        "validation_error", "body", LIMIT_MESSAGE), what


async def assert_log_clean(server: MessengerServer, since: int, api: Api) -> None:
    """No 500, ERROR or traceback was logged (up to a marker request that is logged last)."""
    marker = f"/api/no-such-path-{uuid.uuid4().hex}"
    assert (await api.get(marker)).status == 404
    deadline = time.monotonic() + 10
    while not any(marker in line for line in server.log):
        assert time.monotonic() < deadline, "the marker never reached the log"
        await asyncio.sleep(0.02)
    logged = "".join(server.log[since:])
    assert " ERROR " not in logged and "Traceback" not in logged, logged[-3000:]


@pytest.mark.parametrize("shape", ["objects", "arrays", "unclosed"])
async def test_deep_bodies_are_422_on_open_and_authenticated_endpoints(
    deep_server: MessengerServer, shape: str
) -> None:
    api = Api(deep_server.base_url)
    ann = await api.register()
    chat = await api.create_group(ann)
    since = len(deep_server.log)
    endpoints = [("/api/auth/register", None), ("/api/auth/login", None),
                 ("/api/chats", ann.access_token),
                 (f"/api/chats/{chat['id']}/messages", ann.access_token)]
    for levels in LEVELS:
        body = nested(levels, shape)
        for path, token in endpoints:
            resp = await api.request("POST", path, token=token, body=body,
                                     headers={"Content-Type": "application/json"})
            assert_too_deep(resp.status, resp.json, f"{path} at {levels} levels ({shape})")
    # at the limit, the body is read and the usual field checks answer
    resp = await api.request("POST", "/api/auth/login", body=nested(32, "objects"))
    assert (resp.status, resp.json["error"]["field"]) == (422, "email"), resp.body
    # nothing was stored by the refused sends, and the server is fine
    history = await api.get(f"/api/chats/{chat['id']}/messages", token=ann.access_token)
    assert history.status == 200 and history.json["messages"] == []
    await assert_log_clean(deep_server, since, api)


async def test_a_deep_websocket_frame_gets_an_error_and_the_socket_stays_open(
    deep_server: MessengerServer,
) -> None:
    api = Api(deep_server.base_url)
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    client = await WsClient.connect(deep_server.base_url, ann.access_token)
    since = len(deep_server.log)
    for levels, ref in ((1000, "d1"), (5000, None), (33, "d3")):
        depth = levels - 1
        frame = (f'{{"type":"typing_start","chat_id":"{chat["id"]}","ref":"{ref}","x":'
                 + "[" * depth + "]" * depth + "}") if ref else "[" * levels + "]" * levels
        await client.send(frame)
        error = await client.expect("error")
        assert (error["code"], error["field"], error["ref"]) == (
            "validation_error", "frame", ref), error
        assert "nested deeper than 32 levels" in error["message"]
    # the same socket still works
    pong = await client.request({"type": "ping", "ref": "p1"}, "pong")
    assert pong["type"] == "pong"
    ack = await client.request({"type": "send_message", "chat_id": chat["id"], "text": "ok",
                                "client_msg_id": "after-deep"}, "message_sent")
    assert ack["message"]["seq"] == 1
    assert not client.closed
    client.close()
    await assert_log_clean(deep_server, since, api)
