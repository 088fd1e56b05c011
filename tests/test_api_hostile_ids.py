"""A real id with a little more around it (a final newline above all) in every id position.

``re.match`` with ``$`` accepts ``"<24 hex>\\n"`` (``$`` also matches before a final newline),
and on MongoDB such an id then fails to convert to an ObjectId. Every position that takes an
id — path ids, id lists in bodies, the ``before_id`` query and the WebSocket ``chat_id`` and
``attachment_ids`` — must treat it as any malformed id (404 or 422, an ``error`` frame over
WebSocket), on both stores. Each case first shows that the plain id works, so the refusal is
about the junk and nothing else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.support.api import Account, Api, Response, expect_error
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

#: What is put around a real id. The first is the one ``$`` let through.
JUNK = [
    pytest.param(lambda i: i + "\n", id="trailing-newline"),
    pytest.param(lambda i: i + "\r\n", id="trailing-crlf"),
    pytest.param(lambda i: "\n" + i, id="leading-newline"),
    pytest.param(lambda i: i + " ", id="trailing-space"),
    pytest.param(lambda i: i.upper(), id="upper-case"),
]


@dataclass
class World:
    """ann and bob share a group with one message carrying one attachment (ann's upload)."""

    ann: Account
    bob: Account
    chat_id: str
    message_id: str
    upload_id: str


async def build_world(api: Api) -> World:
    ann, bob = await api.register(name="Ann"), await api.register(name="Bob")
    chat_id = (await api.create_group(ann, bob))["id"]
    resp = await api.post(
        "/api/uploads", {"filename": "cat.png", "content_type": "image/png", "size": len(PNG)},
        token=ann.access_token,
    )
    assert resp.status == 201, resp.body
    ticket = resp.json
    put = await AsyncHTTPClient().fetch(
        HTTPRequest(ticket["upload_request"]["url"], method="PUT", body=PNG,
                    headers=ticket["upload_request"]["headers"], request_timeout=30),
        raise_error=False,
    )
    assert put.code == 200, put.body
    done = await api.post(f"/api/uploads/{ticket['id']}/complete", token=ann.access_token)
    assert done.status == 200, done.body
    resp = await api.post(
        f"/api/chats/{chat_id}/messages", {"text": "look", "attachment_ids": [ticket["id"]]},
        token=ann.access_token,
    )
    assert resp.status == 201, resp.body
    return World(ann, bob, chat_id, resp.json["id"], ticket["id"])


def p(value: str) -> str:
    """A path segment (``\\n`` travels as ``%0A``)."""
    return quote(value, safe="")


async def call(api: Api, who: Account, method: str, path: str, body: Any = None) -> Response:
    if method in ("GET", "DELETE"):
        return await api.request(method, path, token=who.access_token)
    return await api.request(method, path, body if body is not None else {},
                             token=who.access_token)


# -- path ids: 404 as for an unknown id ----------------------------------------------------------
@pytest.mark.parametrize("junk", JUNK)
async def test_path_ids_with_junk_are_not_found(server: MessengerServer, junk: Any) -> None:
    api = Api(server.base_url)
    w = await build_world(api)
    # (method, path template, body, status with the plain id, code with the junk id); ``{}``
    # in the template is where the id goes, ``id`` the plain id.
    cases: list[tuple[str, str, str, Any, int, str]] = [
        ("GET", "/api/users/{}", w.bob.id, None, 200, "user_not_found"),
        ("GET", "/api/chats/{}", w.chat_id, None, 200, "chat_not_found"),
        ("POST", "/api/chats/{}/read", w.chat_id, {"seq": 0}, 200, "chat_not_found"),
        ("GET", "/api/chats/{}/messages", w.chat_id, None, 200, "chat_not_found"),
        ("POST", "/api/chats/{}/messages", w.chat_id, {"text": "hi"}, 201, "chat_not_found"),
        ("POST", "/api/chats/{}/members", w.chat_id, {"user_ids": [w.bob.id]}, 200,
         "chat_not_found"),
        ("POST", "/api/chats/{}/typing", w.chat_id, {"is_typing": False}, 204,
         "chat_not_found"),
        ("POST", "/api/uploads/{}/complete", w.upload_id, None, 200, "upload_not_found"),
        ("GET", "/api/attachments/{}?redirect=false", w.upload_id, None, 200,
         "attachment_not_found"),
    ]
    for method, template, plain, body, ok, code in cases:
        resp = await call(api, w.ann, method, template.format(p(plain)), body)
        assert resp.status == ok, (method, template, resp.status, resp.body)
        resp = await call(api, w.ann, method, template.format(p(junk(plain))), body)
        expect_error(resp, 404, code)

    # Leaving: a junk chat id is an unknown chat; a junk user id is "someone else" (403).
    path = f"/api/chats/{p(junk(w.chat_id))}/members/{w.ann.id}"
    expect_error(await call(api, w.ann, "DELETE", path), 404, "chat_not_found")
    path = f"/api/chats/{w.chat_id}/members/{p(junk(w.ann.id))}"
    expect_error(await call(api, w.ann, "DELETE", path), 403, "forbidden")
    assert (await call(api, w.ann, "GET", f"/api/chats/{w.chat_id}")).status == 200  # still in


# -- ids in bodies and in the query: 422 naming the field --------------------------------------
@pytest.mark.parametrize("junk", JUNK)
async def test_body_and_query_ids_with_junk_are_validation_errors(
    server: MessengerServer, junk: Any
) -> None:
    api = Api(server.base_url)
    w = await build_world(api)
    carol = await api.register(name="Carol")
    group = {"type": "group", "member_ids": [w.bob.id]}
    cases: list[tuple[str, str, dict[str, Any], str, str, int]] = [
        # (method, path, body with {} for the id, field, plain id, status with the plain id)
        ("POST", "/api/chats", group, "member_ids", w.bob.id, 201),
        ("POST", "/api/chats", {"type": "direct", "member_ids": [w.bob.id]}, "member_ids",
         w.bob.id, 201),
        ("POST", f"/api/chats/{w.chat_id}/members", {"user_ids": [carol.id]}, "user_ids",
         carol.id, 200),
    ]
    for method, path, body, field, plain, ok in cases:
        resp = await call(api, w.ann, method, path, body)
        assert resp.status == ok, (path, resp.status, resp.body)
        hostile = {**body, field: [junk(plain)]}
        expect_error(await call(api, w.ann, method, path, hostile), 422, "validation_error",
                     field=field)

    # attachment_ids: the junk form of an upload of ann's (a fresh one: the posted one is in use)
    fresh = await api.post(
        "/api/uploads", {"filename": "a.txt", "content_type": "text/plain", "size": 3},
        token=w.ann.access_token,
    )
    assert fresh.status == 201, fresh.body
    body = {"text": "x", "attachment_ids": [junk(fresh.json["id"])]}
    resp = await call(api, w.ann, "POST", f"/api/chats/{w.chat_id}/messages", body)
    expect_error(resp, 422, "validation_error", field="attachment_ids")

    # before_id: the plain id pages, the junk one is refused (not silently stripped)
    path = f"/api/chats/{w.chat_id}/messages?before_id="
    assert (await call(api, w.ann, "GET", path + p(w.message_id))).status == 200
    resp = await call(api, w.ann, "GET", path + p(junk(w.message_id)))
    expect_error(resp, 422, "validation_error", field="before_id")


# -- WebSocket frames: an error frame naming the field, the socket stays open -------------------
@pytest.mark.parametrize("junk", JUNK)
async def test_websocket_ids_with_junk_get_an_error_frame(
    server: MessengerServer, junk: Any
) -> None:
    api = Api(server.base_url)
    w = await build_world(api)
    client = await WsClient.connect(server.base_url, w.ann.access_token)
    try:
        bad_chat = junk(w.chat_id)
        frames: list[tuple[dict[str, Any], str]] = [
            ({"type": "typing_start", "chat_id": bad_chat}, "chat_id"),
            ({"type": "typing_stop", "chat_id": bad_chat}, "chat_id"),
            ({"type": "mark_read", "chat_id": bad_chat, "seq": 1}, "chat_id"),
            ({"type": "send_message", "chat_id": bad_chat, "text": "hi",
              "client_msg_id": f"c-{uuid.uuid4().hex}"}, "chat_id"),
            ({"type": "send_message", "chat_id": w.chat_id, "text": "hi",
              "client_msg_id": f"c-{uuid.uuid4().hex}",
              "attachment_ids": [junk(w.upload_id)]}, "attachment_ids"),
        ]
        for number, (frame, field) in enumerate(frames):
            frame.setdefault("ref", f"r-{number}")
            answer = await client.request(frame, "error")
            assert answer["type"] == "error", answer
            assert (answer["code"], answer.get("field")) == ("validation_error", field), answer
        # the socket is still usable: the plain id works
        sent = await client.request(
            {"type": "send_message", "chat_id": w.chat_id, "text": "still here",
             "client_msg_id": f"c-{uuid.uuid4().hex}"}, "message_sent")
        assert sent["type"] == "message_sent", sent
    finally:
        client.conn.close()


def test_is_valid_id_wants_exactly_24_lower_case_hex_digits() -> None:
    from messenger.ids import is_valid_id, new_id

    plain = new_id()
    assert is_valid_id(plain)
    for bad in (plain + "\n", plain + "\r\n", "\n" + plain, plain + " ", plain.upper(),
                plain[:-1], plain + "0", "", None, 12, [plain]):
        assert not is_valid_id(bad), repr(bad)
