"""Chats: creation rules, listing order, membership privacy and read positions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.api import Account, Api, expect_chat_hidden, expect_error, is_json_response

ID = re.compile(r"^[0-9a-f]{24}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CHAT_VIEW_KEYS = {
    "id",
    "type",
    "title",
    "member_ids",
    "created_at",
    "last_seq",
    "last_message",
    "unread_count",
}
NO_SUCH_ID = "0123456789abcdef01234567"


async def create_chat(api: Api, owner: Account, body: dict[str, Any], status: int = 201):
    resp = await api.post("/api/chats", body, token=owner.access_token)
    assert resp.status == status, resp.body
    return resp.json


async def listing(api: Api, who: Account) -> list[dict[str, Any]]:
    resp = await api.get("/api/chats", token=who.access_token)
    assert resp.status == 200, resp.body
    assert is_json_response(resp)
    assert set(resp.json) == {"chats"}
    return resp.json["chats"]


# -- create ------------------------------------------------------------------------------------


async def test_group_create_adds_caller_and_collapses_duplicates(server) -> None:
    api = Api(server.base_url)
    a, b, c = await api.register(), await api.register(), await api.register()
    resp = await api.post(
        "/api/chats",
        {"type": "group", "member_ids": [b.id, c.id, b.id, c.id], "title": "Team"},
        token=a.access_token,
    )
    assert resp.status == 201, resp.body
    assert is_json_response(resp)
    chat = resp.json
    assert set(chat) == CHAT_VIEW_KEYS
    assert ID.match(chat["id"])
    assert chat["type"] == "group"
    assert chat["title"] == "Team"
    assert sorted(chat["member_ids"]) == sorted([a.id, b.id, c.id])
    assert TIMESTAMP.match(chat["created_at"])
    assert chat["last_seq"] == 0
    assert chat["last_message"] is None
    assert chat["unread_count"] == 0
    # Every member sees it.
    for who in (a, b, c):
        seen = await api.get_chat(who, chat["id"])
        assert seen["id"] == chat["id"]
        assert sorted(seen["member_ids"]) == sorted(chat["member_ids"])


async def test_group_caller_listed_explicitly_is_not_doubled(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    chat = await create_chat(api, a, {"type": "group", "member_ids": [a.id, b.id, a.id]})
    assert sorted(chat["member_ids"]) == sorted([a.id, b.id])
    assert chat["title"] is None


async def test_direct_create_then_again_from_either_side_200_same_chat(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    first = await api.post(
        "/api/chats", {"type": "direct", "member_ids": [b.id]}, token=a.access_token
    )
    assert first.status == 201, first.body
    chat = first.json
    assert chat["type"] == "direct"
    assert chat["title"] is None
    assert sorted(chat["member_ids"]) == sorted([a.id, b.id])

    again = await create_chat(api, a, {"type": "direct", "member_ids": [b.id]}, status=200)
    assert again["id"] == chat["id"]
    other_side = await create_chat(api, b, {"type": "direct", "member_ids": [a.id]}, status=200)
    assert other_side["id"] == chat["id"]
    listed = await create_chat(api, b, {"type": "direct", "member_ids": [a.id, b.id]}, status=200)
    assert listed["id"] == chat["id"]
    # One direct chat in each listing, not three.
    assert [c["id"] for c in await listing(api, a)] == [chat["id"]]
    assert [c["id"] for c in await listing(api, b)] == [chat["id"]]


async def test_direct_with_self_only_422(server) -> None:
    api = Api(server.base_url)
    a = await api.register()
    for members in ([a.id], [], [a.id, a.id]):
        resp = await api.post(
            "/api/chats", {"type": "direct", "member_ids": members}, token=a.access_token
        )
        expect_error(resp, 422, "validation_error", "member_ids")


async def test_direct_with_two_others_422(server) -> None:
    api = Api(server.base_url)
    a, b, c = await api.register(), await api.register(), await api.register()
    resp = await api.post(
        "/api/chats", {"type": "direct", "member_ids": [b.id, c.id]}, token=a.access_token
    )
    expect_error(resp, 422, "validation_error", "member_ids")
    assert await listing(api, a) == []


async def test_direct_with_title_422(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    resp = await api.post(
        "/api/chats",
        {"type": "direct", "member_ids": [b.id], "title": "Us"},
        token=a.access_token,
    )
    expect_error(resp, 422, "validation_error", "title")
    assert await listing(api, a) == []


@pytest.mark.parametrize("kind", ["group", "direct"])
async def test_unknown_members_422(server, kind: str) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    members = [NO_SUCH_ID] if kind == "direct" else [b.id, NO_SUCH_ID]
    resp = await api.post("/api/chats", {"type": kind, "member_ids": members}, token=a.access_token)
    expect_error(resp, 422, "unknown_members", "member_ids")
    assert await listing(api, a) == []


@pytest.mark.parametrize(
    "members",
    [["nope"], ["A" * 24], ["a" * 25], [123], [None], [{"$oid": "a" * 24}], "a" * 24, None],
)
async def test_malformed_member_ids_422(server, members) -> None:
    api = Api(server.base_url)
    a = await api.register()
    resp = await api.post(
        "/api/chats", {"type": "group", "member_ids": members}, token=a.access_token
    )
    error = expect_error(resp, 422, "validation_error")
    # A "$" key inside the list may be refused by name (member_ids.$oid); all name member_ids.
    assert error["field"].startswith("member_ids"), error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "channel"}, "type"),
        ({}, "type"),
        ({"type": 1}, "type"),
        ({"type": "group", "title": ""}, "title"),
        ({"type": "group", "title": "t" * 101}, "title"),
        ({"type": "group", "title": 5}, "title"),
    ],
)
async def test_invalid_chat_body_422(server, body, field: str) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    resp = await api.post("/api/chats", {**body, "member_ids": [b.id]}, token=a.access_token)
    expect_error(resp, 422, "validation_error", field)


async def test_group_title_of_100_chars_ok(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    chat = await create_chat(api, a, {"type": "group", "member_ids": [b.id], "title": "t" * 100})
    assert chat["title"] == "t" * 100


# -- list --------------------------------------------------------------------------------------


async def test_list_orders_by_recent_activity(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    first = await api.create_group(a, b, title="first")
    second = await api.create_group(a, b, title="second")
    third = await api.create_group(a, b, title="third")
    # No messages yet: newest creation first.
    assert [c["id"] for c in await listing(api, a)] == [third["id"], second["id"], first["id"]]

    # A message moves its chat to the top.
    await api.send_text(b, first["id"], "hello first")
    chats = await listing(api, a)
    assert [c["id"] for c in chats] == [first["id"], third["id"], second["id"]]
    top = chats[0]
    assert set(top) == CHAT_VIEW_KEYS
    assert top["last_seq"] == 1
    assert top["last_message"]["text"] == "hello first"
    assert top["last_message"]["sender_id"] == b.id
    assert top["last_message"]["seq"] == 1
    assert top["unread_count"] == 1
    assert chats[1]["last_message"] is None
    assert chats[1]["unread_count"] == 0

    await api.send_text(a, second["id"], "hello second")
    await api.send_text(a, second["id"], "again second")
    chats = await listing(api, b)
    assert [c["id"] for c in chats] == [second["id"], first["id"], third["id"]]
    assert chats[0]["last_message"]["text"] == "again second"
    assert chats[0]["last_message"]["seq"] == 2
    assert chats[0]["unread_count"] == 2
    # b sent the message in `first`: its own messages are never unread.
    assert chats[1]["unread_count"] == 0


async def test_list_shows_only_own_chats(server) -> None:
    api = Api(server.base_url)
    a, b, c = await api.register(), await api.register(), await api.register()
    ab = await api.create_group(a, b)
    bc = await api.create_group(b, c)
    assert [x["id"] for x in await listing(api, a)] == [ab["id"]]
    assert [x["id"] for x in await listing(api, c)] == [bc["id"]]
    assert {x["id"] for x in await listing(api, b)} == {ab["id"], bc["id"]}


async def test_list_requires_auth(server) -> None:
    api = Api(server.base_url)
    expect_error(await api.get("/api/chats"), 401, "unauthorized")
    resp = await api.post("/api/chats", {"type": "group", "member_ids": [NO_SUCH_ID]})
    expect_error(resp, 401, "unauthorized")


# -- privacy -----------------------------------------------------------------------------------


async def test_non_member_gets_404_everywhere(server) -> None:
    api = Api(server.base_url)
    a, b, outsider = await api.register(), await api.register(), await api.register()
    chat = await api.create_group(a, b)
    message = await api.send_text(a, chat["id"], "private")
    cid = chat["id"]
    token = outsider.access_token

    await expect_chat_hidden(api, cid, token)
    resp = await api.get(f"/api/chats/{cid}/messages?before_id={message['id']}", token=token)
    expect_error(resp, 404, "chat_not_found")

    # Nothing changed for the members.
    seen = await api.get_chat(b, cid)
    assert seen["last_seq"] == 1
    assert seen["last_message"]["text"] == "private"
    assert await listing(api, outsider) == []


@pytest.mark.parametrize("chat_id", [NO_SUCH_ID, "nope", "A" * 24])
async def test_missing_or_malformed_chat_404_like_non_member(server, chat_id: str) -> None:
    api = Api(server.base_url)
    a = await api.register()
    token = a.access_token
    expect_error(await api.get(f"/api/chats/{chat_id}", token=token), 404, "chat_not_found")
    resp = await api.get(f"/api/chats/{chat_id}/messages", token=token)
    expect_error(resp, 404, "chat_not_found")
    resp = await api.post(f"/api/chats/{chat_id}/messages", {"text": "hi"}, token=token)
    expect_error(resp, 404, "chat_not_found")
    resp = await api.post(f"/api/chats/{chat_id}/read", {"seq": 0}, token=token)
    expect_error(resp, 404, "chat_not_found")


# -- read positions ----------------------------------------------------------------------------


async def read(api: Api, who: Account, chat_id: str, seq: Any) -> dict[str, Any]:
    resp = await api.post(f"/api/chats/{chat_id}/read", {"seq": seq}, token=who.access_token)
    assert resp.status == 200, resp.body
    body = resp.json
    assert set(body) == {"chat_id", "seq", "unread_count"}
    assert body["chat_id"] == chat_id
    return body


async def test_read_forward_only_and_clamped(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    chat = await api.create_group(a, b)
    cid = chat["id"]
    for i in range(3):
        await api.send_text(a, cid, f"m{i}")
    assert (await api.get_chat(b, cid))["unread_count"] == 3
    assert (await api.get_chat(a, cid))["unread_count"] == 0

    assert await read(api, b, cid, 2) == {"chat_id": cid, "seq": 2, "unread_count": 1}
    assert (await api.get_chat(b, cid))["unread_count"] == 1
    # Backwards: unchanged.
    assert await read(api, b, cid, 1) == {"chat_id": cid, "seq": 2, "unread_count": 1}
    assert await read(api, b, cid, 0) == {"chat_id": cid, "seq": 2, "unread_count": 1}
    # Past the end: clamped to last_seq.
    assert await read(api, b, cid, 99) == {"chat_id": cid, "seq": 3, "unread_count": 0}
    assert (await api.get_chat(b, cid))["unread_count"] == 0

    # A new message counts as unread again, and the clamp did not leave the position at 99.
    await api.send_text(a, cid, "m3")
    assert (await api.get_chat(b, cid))["unread_count"] == 1
    listed = {c["id"]: c for c in await listing(api, b)}
    assert listed[cid]["unread_count"] == 1
    assert await read(api, b, cid, 4) == {"chat_id": cid, "seq": 4, "unread_count": 0}


async def test_sending_moves_own_read_position(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    cid = (await api.create_group(a, b))["id"]
    await api.send_text(a, cid, "one")
    await api.send_text(a, cid, "two")
    assert (await api.get_chat(b, cid))["unread_count"] == 2
    await api.send_text(b, cid, "three")
    assert (await api.get_chat(b, cid))["unread_count"] == 0
    assert (await api.get_chat(a, cid))["unread_count"] == 1
    assert await read(api, b, cid, 0) == {"chat_id": cid, "seq": 3, "unread_count": 0}


@pytest.mark.parametrize("seq", [-1, "2", True, 1.5, None, [1]])
async def test_read_invalid_seq_422(server, seq) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    cid = (await api.create_group(a, b))["id"]
    await api.send_text(a, cid, "x")
    resp = await api.post(f"/api/chats/{cid}/read", {"seq": seq}, token=b.access_token)
    expect_error(resp, 422, "validation_error", "seq")
    assert (await api.get_chat(b, cid))["unread_count"] == 1


async def test_read_missing_seq_422(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    cid = (await api.create_group(a, b))["id"]
    resp = await api.post(f"/api/chats/{cid}/read", {}, token=a.access_token)
    expect_error(resp, 422, "validation_error", "seq")
