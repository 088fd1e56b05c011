"""HTTP edges over raw sockets (API_CONTRACT.md §1, §11): ambiguous body lengths, pipelined
requests behind early errors, CORS for REST, and what of a request URI reaches the log."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from messenger.redaction import redact
from tests.conftest import server_env
from tests.support.api import Account, Api
from tests.support.processes import MessengerServer
from tests.support.raw_http import connect, read_responses, request_bytes

ALLOWED = "https://app.example.com"
EDGE_ENV = {"ALLOWED_ORIGINS": ALLOWED, "LOG_LEVEL": "INFO"}


@pytest.fixture(scope="module")
def edge_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    tmp_dir = str(tmp_path_factory.mktemp("edges"))
    proc = MessengerServer({**server_env("sqlite", request, tmp_dir), **EDGE_ENV}).start()
    yield proc
    proc.stop()


async def _chat(api: Api) -> tuple[Account, str]:
    ann = await api.register()
    chat = await api.create_group(ann, title="pipeline")
    return ann, chat["id"]


def _send(token: str, chat_id: str, text: str) -> bytes:
    body = f'{{"text":"{text}"}}'.encode()
    return request_bytes("POST", f"/api/chats/{chat_id}/messages", body=body,
                         headers={"Authorization": f"Bearer {token}",
                                  "Content-Type": "application/json"})


async def _texts(api: Api, who: Account, chat_id: str) -> list[str]:
    resp = await api.get(f"/api/chats/{chat_id}/messages", token=who.access_token)
    assert resp.status == 200, resp.body
    return [m["text"] for m in resp.json["messages"]]


def _exchange(port: int, data: bytes, count: int | None = None):
    sock = connect(port)
    try:
        sock.sendall(data)
        return read_responses(sock, count, timeout=5.0)
    finally:
        sock.close()


# -- item 7: ambiguous Content-Length ------------------------------------------------------------
@pytest.mark.parametrize("framing", [
    "Content-Length: 2, 2",
    "Content-Length: 2\r\nContent-Length: 2",
    "Content-Length: +2",
    "Content-Length: 0x2",
    "Content-Length: 2\r\nTransfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
])
async def test_an_ambiguous_body_length_is_400_and_nothing_behind_it_runs(
    edge_server: MessengerServer, framing: str
) -> None:
    api = Api(edge_server.base_url)
    ann, chat_id = await _chat(api)
    first = (f"POST /api/chats/{chat_id}/messages HTTP/1.1\r\nHost: x\r\n"
             f"Authorization: Bearer {ann.access_token}\r\n{framing}\r\n\r\n").encode() + b"{}"
    smuggled = _send(ann.access_token, chat_id, "smuggled")
    responses, closed = await asyncio.to_thread(_exchange, edge_server.port, first + smuggled)
    assert [r.status for r in responses] == [400], responses
    assert responses[0].error_code == "bad_request"
    assert responses[0].header("Connection") == "close"
    assert closed
    assert await _texts(api, ann, chat_id) == []  # the request behind it was never run


# -- item 5: early errors keep the connection in step --------------------------------------------
async def test_a_bad_token_and_an_unknown_path_keep_the_connection_usable(
    edge_server: MessengerServer,
) -> None:
    api = Api(edge_server.base_url)
    ann, chat_id = await _chat(api)
    pipeline = (
        request_bytes("GET", "/api/users/me", headers={"Authorization": "Bearer not-a-jwt"})
        + _send(ann.access_token, chat_id, "one")
        + request_bytes("GET", "/no/such/path")
        + request_bytes("POST", "/api/users/me", body=b'{"x": 1}')  # no token, with a body
        + _send(ann.access_token, chat_id, "two")
    )
    responses, _closed = await asyncio.to_thread(_exchange, edge_server.port, pipeline, 5)
    assert [r.status for r in responses] == [401, 201, 404, 401, 201], responses
    assert [r.header("Connection") for r in responses] == [None] * 5
    assert responses[0].error_code == "invalid_token"
    assert responses[2].error_code == "not_found"
    assert responses[3].error_code == "unauthorized"
    assert await _texts(api, ann, chat_id) == ["one", "two"]


async def test_a_body_declared_too_large_closes_visibly_and_runs_nothing_behind_it(
    edge_server: MessengerServer,
) -> None:
    api = Api(edge_server.base_url)
    ann, chat_id = await _chat(api)
    huge = (f"POST /api/chats/{chat_id}/messages HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {ann.access_token}\r\n"
            "Content-Length: 99999999\r\n\r\n").encode()
    behind = _send(ann.access_token, chat_id, "behind")
    responses, closed = await asyncio.to_thread(_exchange, edge_server.port, huge + behind)
    assert responses and responses[0].status == 413, responses
    assert responses[0].error_code == "payload_too_large"
    assert responses[0].header("Connection") == "close"
    assert [r.status for r in responses] == [413]
    assert closed
    assert await _texts(api, ann, chat_id) == []


# -- item 12: CORS --------------------------------------------------------------------------------
async def test_a_preflight_from_an_allowed_origin_is_answered_without_a_token(
    edge_server: MessengerServer,
) -> None:
    api = Api(edge_server.base_url)
    resp = await api.request("OPTIONS", "/api/chats", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert resp.status == 204, resp.body
    assert resp.header("Access-Control-Allow-Origin") == ALLOWED
    assert set(resp.header("Access-Control-Allow-Methods").split(", ")) >= {"GET", "POST"}
    allowed_headers = resp.header("Access-Control-Allow-Headers").lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert int(resp.header("Access-Control-Max-Age")) > 0
    assert "Origin" in resp.header("Vary")


async def test_a_preflight_from_another_origin_gets_no_cors_headers(
    edge_server: MessengerServer,
) -> None:
    api = Api(edge_server.base_url)
    resp = await api.request("OPTIONS", "/api/chats", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert resp.status == 403
    assert resp.json["error"]["code"] == "origin_not_allowed"
    assert resp.header("Access-Control-Allow-Origin") == ""
    assert resp.header("Access-Control-Allow-Methods") == ""


async def test_answers_to_an_allowed_origin_carry_cors_headers_errors_included(
    edge_server: MessengerServer,
) -> None:
    api = Api(edge_server.base_url)
    ann = await api.register()
    ok = await api.get("/api/users/me", token=ann.access_token, headers={"Origin": ALLOWED})
    assert ok.status == 200
    assert ok.header("Access-Control-Allow-Origin") == ALLOWED
    assert "Retry-After" in ok.header("Access-Control-Expose-Headers")
    assert "X-Request-ID" in ok.header("Access-Control-Expose-Headers")  # a page reads its id
    refused = await api.get("/api/users/me", headers={"Origin": ALLOWED})
    assert refused.status == 401
    assert refused.header("Access-Control-Allow-Origin") == ALLOWED  # the script can read why
    other = await api.get("/api/users/me", token=ann.access_token,
                          headers={"Origin": "https://evil.example"})
    assert other.status == 200  # a bearer API: the browser, not the server, withholds it
    assert other.header("Access-Control-Allow-Origin") == ""
    same_host = await api.get("/api/healthz",
                              headers={"Origin": f"http://127.0.0.1:{edge_server.port}"})
    assert same_host.header("Access-Control-Allow-Origin") == f"http://127.0.0.1:{edge_server.port}"


async def test_options_on_an_unknown_path_is_404(edge_server: MessengerServer) -> None:
    resp = await Api(edge_server.base_url).request(
        "OPTIONS", "/api/nothing", headers={"Origin": ALLOWED})
    assert resp.status == 404 and resp.json["error"]["code"] == "not_found"


# -- item 10: redaction ---------------------------------------------------------------------------
@pytest.mark.parametrize(("uri", "expected"), [
    ("/ws?token=abc.def.ghi", "/ws?token=[redacted]"),
    ("/ws?%74oken=abc.def.ghi", "/ws?%74oken=[redacted]"),
    ("/ws?TOKEN=abc", "/ws?TOKEN=[redacted]"),
    ("/ws?to%6Ben=abc&last_event_id=5", "/ws?to%6Ben=[redacted]&last_event_id=5"),
    ("/x?access_token=a&refresh%5Ftoken=b&q=1", "/x?access_token=[redacted]"
                                                "&refresh%5Ftoken=[redacted]&q=1"),
    ("/x?a=1&token", "/x?a=1&token=[redacted]"),
    ("/api/storage/eyJrIjoiYSJ9.c2ln", "/api/storage/[redacted]"),
    ("/api/%73torage/eyJrIjoiYSJ9.c2ln?x=1", "/api/storage/[redacted]?x=1"),
    ("/api/chats?limit=5", "/api/chats?limit=5"),
])
def test_redact(uri: str, expected: str) -> None:
    assert redact(uri) == expected


async def test_no_token_or_storage_grant_reaches_the_access_log(
    edge_server: MessengerServer,
) -> None:
    api = Api(edge_server.base_url)
    ann = await api.register()
    token = ann.access_token
    grant = "eyJrZXkiOiJzZWNyZXQtZ3JhbnQifQ.c2lnbmF0dXJlLXZhbHVl"
    for path in (f"/ws?%74oken={token}", f"/ws?to%6Ben={token}&last_event_id=1",
                 f"/api/events?access_token={token}", f"/api/storage/{grant}"):
        await api.get(path)
    marker = "/api/healthz?redaction-check-done"
    await api.get(marker)

    for _ in range(200):  # the access line of the last request is written after its answer
        if any(marker in line for line in edge_server.log):
            break
        await asyncio.sleep(0.05)
    text = "".join(edge_server.log)
    assert marker in text
    assert token not in text
    assert token.split(".")[2] not in text  # not even the signature
    assert grant not in text and "c2lnbmF0dXJlLXZhbHVl" not in text
    assert re.search(r"GET /ws\?%74oken=\[redacted\]", text), text[-2000:]
    assert "/api/storage/[redacted]" in text
