"""Hostile and broken input: never a 500, always the JSON error envelope."""

from __future__ import annotations

import uuid

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.support.api import Api, Response, expect_chat_hidden, expect_error, is_json_response

JSON = {"Content-Type": "application/json"}


def new_email() -> str:
    return f"bad-{uuid.uuid4().hex[:12]}@example.com"


async def raw_post(api: Api, path: str, body: bytes, token: str | None = None) -> Response:
    return await api.request("POST", path, body=body, headers=JSON, token=token)


# -- not JSON ----------------------------------------------------------------------------------

MALFORMED = [b'{"email": ', b"{'email': 'a@b.c'}", b"not json", b'{"a": 1,}', b"{}}"]


@pytest.mark.parametrize("body", MALFORMED)
@pytest.mark.parametrize("path", ["/api/auth/register", "/api/auth/login", "/api/auth/refresh"])
async def test_malformed_json_400(server, path: str, body: bytes) -> None:
    api = Api(server.base_url)
    expect_error(await raw_post(api, path, body), 400, "malformed_json")


async def test_malformed_json_400_on_authenticated_routes(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    cid = (await api.create_group(a, b))["id"]
    for path in ("/api/chats", f"/api/chats/{cid}/messages", f"/api/chats/{cid}/read"):
        resp = await raw_post(api, path, b'{"text": "unterminated', token=a.access_token)
        expect_error(resp, 400, "malformed_json")


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "\xff\xfe", "password": "correct horse battery", "display_name": "x"}',
        b"\xff\xfe{}",
        '{"display_name": "caf\u00e9"}'.encode("latin-1"),
    ],
)
async def test_non_utf8_body_400(server, body: bytes) -> None:
    api = Api(server.base_url)
    expect_error(await raw_post(api, "/api/auth/register", body), 400, "malformed_json")


# -- JSON of the wrong shape -------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"[]", b'[{"email": "a@b.co"}]', b"42", b'"text"', b"true"])
@pytest.mark.parametrize("path", ["/api/auth/register", "/api/auth/login"])
async def test_json_not_an_object_422(server, path: str, body: bytes) -> None:
    api = Api(server.base_url)
    expect_error(await raw_post(api, path, body), 422, "validation_error")


async def test_json_not_an_object_422_on_chat_routes(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    cid = (await api.create_group(a, b))["id"]
    for path in ("/api/chats", f"/api/chats/{cid}/messages", f"/api/chats/{cid}/read"):
        for body in (b"[]", b"7"):
            resp = await raw_post(api, path, body, token=a.access_token)
            expect_error(resp, 422, "validation_error")


# -- operator injection ------------------------------------------------------------------------


@pytest.mark.parametrize("email", [{"$ne": None}, {"$gt": ""}, {"$regex": ".*"}, {"$exists": True}])
async def test_operator_email_on_login_422(server, email) -> None:
    api = Api(server.base_url)
    await api.register()  # there is at least one user a "$ne" could match
    resp = await api.post("/api/auth/login", {"email": email, "password": "correct horse battery"})
    error = expect_error(resp, 422, "validation_error")
    assert error["field"].startswith("email"), error


async def test_operator_password_on_login_422(server) -> None:
    api = Api(server.base_url)
    account = await api.register()
    resp = await api.post("/api/auth/login", {"email": account.email, "password": {"$ne": None}})
    error = expect_error(resp, 422, "validation_error")
    assert error["field"].startswith("password"), error


async def test_operator_email_on_register_422(server) -> None:
    api = Api(server.base_url)
    resp = await api.post(
        "/api/auth/register",
        {"email": {"$ne": None}, "password": "correct horse battery", "display_name": "Eve"},
    )
    error = expect_error(resp, 422, "validation_error")
    assert error["field"].startswith("email"), error


@pytest.mark.parametrize("extra", [{"$where": "1 == 1"}, {"$set": {"email": "x@y.co"}}, {"$": 1}])
async def test_dollar_keys_refused_422(server, extra) -> None:
    api = Api(server.base_url)
    account = await api.register()
    resp = await api.post(
        "/api/auth/login", {"email": account.email, "password": account.password, **extra}
    )
    error = expect_error(resp, 422, "validation_error")
    assert error["field"].startswith("$"), error
    resp = await api.post(
        "/api/auth/register",
        {"email": new_email(), "password": "correct horse battery", "display_name": "E", **extra},
    )
    expect_error(resp, 422, "validation_error")


async def test_nested_dollar_keys_refused_422(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    cid = (await api.create_group(a, b))["id"]
    resp = await api.post(
        "/api/chats",
        {"type": "group", "member_ids": [{"$ne": None}]},
        token=a.access_token,
    )
    expect_error(resp, 422, "validation_error")
    resp = await api.post(
        f"/api/chats/{cid}/messages",
        {"text": "hi", "meta": {"nested": {"$inc": {"seq": 5}}}},
        token=a.access_token,
    )
    expect_error(resp, 422, "validation_error")
    resp = await api.post(f"/api/chats/{cid}/read", {"seq": {"$gt": 0}}, token=a.access_token)
    expect_error(resp, 422, "validation_error")
    # Nothing was stored by any of it.
    view = await api.get(f"/api/chats/{cid}", token=a.access_token)
    assert view.json["last_seq"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [({"seq": "3"}, "seq"), ({"seq": True}, "seq"), ({"seq": False}, "seq")],
)
async def test_strings_and_bools_for_ints_422(server, body, field: str) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    cid = (await api.create_group(a, b))["id"]
    resp = await api.post(f"/api/chats/{cid}/read", body, token=a.access_token)
    expect_error(resp, 422, "validation_error", field)


# -- size --------------------------------------------------------------------------------------


async def test_body_over_64k_413(server) -> None:
    api = Api(server.base_url)
    padding = "x" * 70_000
    body = (
        '{"email": "big@example.com", "password": "correct horse battery", '
        f'"display_name": "{padding}"}}'
    ).encode()
    assert len(body) > 65_536
    resp = await raw_post(api, "/api/auth/register", body)
    expect_error(resp, 413, "payload_too_large")


async def test_message_body_over_64k_413(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    cid = (await api.create_group(a, b))["id"]
    resp = await api.post(
        f"/api/chats/{cid}/messages", {"text": "y" * 70_000}, token=a.access_token
    )
    expect_error(resp, 413, "payload_too_large")
    view = await api.get(f"/api/chats/{cid}", token=a.access_token)
    assert view.json["last_seq"] == 0
    # The server is still fine afterwards.
    await api.send_text(a, cid, "small")


@pytest.mark.parametrize("total", [70_000, 2_000_000])
async def test_chunked_body_over_64k_413(server, total: int) -> None:
    """No Content-Length: the limit is enforced as chunks arrive, with the same JSON 413."""
    chunk = b" " * 16_384

    async def producer(write) -> None:
        await write(b"{")
        for _ in range(total // len(chunk)):
            await write(chunk)
        await write(b"}")

    request = HTTPRequest(
        server.base_url + "/api/auth/login", method="POST", headers=dict(JSON),
        body_producer=producer, request_timeout=30,
    )
    resp = await AsyncHTTPClient().fetch(request, raise_error=False)
    assert resp.code == 413, (resp.code, resp.error)
    assert orjson.loads(resp.body)["error"]["code"] == "payload_too_large"
    # The server is still fine afterwards.
    assert (await Api(server.base_url).get("/api/healthz")).status == 200


async def test_declared_large_body_refused_before_sending_with_100_continue(server) -> None:
    body = b"{" + b" " * 2_000_000 + b"}"
    request = HTTPRequest(
        server.base_url + "/api/auth/login", method="POST", headers=dict(JSON), body=body,
        expect_100_continue=True, request_timeout=30,
    )
    resp = await AsyncHTTPClient().fetch(request, raise_error=False)
    assert resp.code == 413, (resp.code, resp.error)
    assert orjson.loads(resp.body)["error"]["code"] == "payload_too_large"


# -- ids in paths ------------------------------------------------------------------------------

BAD_IDS = ["nope", "1", "g" * 24, "A" * 24, "a" * 23, "a" * 25, "%24ne", "%7B%7D", "..%2F"]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_invalid_ids_in_paths_404_json(server, bad: str) -> None:
    api = Api(server.base_url)
    a = await api.register()
    token = a.access_token
    expect_error(await api.get(f"/api/users/{bad}", token=token), 404, "user_not_found")
    await expect_chat_hidden(api, bad, token)


# -- the envelope everywhere -------------------------------------------------------------------


async def test_every_error_has_json_envelope(server) -> None:
    api = Api(server.base_url)
    a = await api.register()
    token = a.access_token
    cases = [
        (await api.get("/api/unknown"), 404),
        (await api.request("DELETE", "/api/healthz"), 405),
        (await raw_post(api, "/api/auth/login", b"{"), 400),
        (await raw_post(api, "/api/auth/login", b"[]"), 422),
        (await api.post("/api/auth/login", {"email": a.email, "password": "wrong pass"}), 401),
        (await api.get("/api/users/me"), 401),
        (await api.get("/api/users/me", token="x.y.z"), 401),
        (await api.get("/api/users/" + "f" * 24, token=token), 404),
        (await api.get("/api/chats/" + "f" * 24, token=token), 404),
        (
            await api.post(
                "/api/auth/register", {"email": a.email, "password": "p" * 10, "display_name": "D"}
            ),
            409,
        ),
        (await raw_post(api, "/api/auth/login", b"{" + b" " * 70_000 + b"}"), 413),
    ]
    for resp, status in cases:
        assert resp.status == status, (status, resp.status, resp.body[:200])
        assert is_json_response(resp), resp.headers
        body = resp.json
        assert set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
