"""Group membership over HTTP: add members, leave, and every error in its documented order.

Runs against the real server on both stores (the ``server`` fixture); the member limit is
checked on a second server started with a small ``MAX_GROUP_MEMBERS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import server_env
from tests.support.api import Account, Api, expect_chat_hidden, expect_error
from tests.support.processes import MessengerServer

NO_SUCH_ID = "0123456789abcdef01234567"


def members_path(chat_id: str) -> str:
    return f"/api/chats/{chat_id}/members"


async def add(api: Api, who: Account, chat_id: str, user_ids: Any, status: int = 200):
    resp = await api.post(members_path(chat_id), {"user_ids": user_ids}, token=who.access_token)
    assert resp.status == status, resp.body
    return resp


async def leave(api: Api, who: Account, chat_id: str, user_id: str):
    return await api.request(
        "DELETE", f"{members_path(chat_id)}/{user_id}", token=who.access_token
    )


async def chat_ids(api: Api, who: Account) -> list[str]:
    resp = await api.get("/api/chats", token=who.access_token)
    assert resp.status == 200, resp.body
    return [chat["id"] for chat in resp.json["chats"]]


async def direct_chat(api: Api, a: Account, b: Account) -> dict[str, Any]:
    resp = await api.post(
        "/api/chats", {"type": "direct", "member_ids": [b.id]}, token=a.access_token
    )
    assert resp.status in (200, 201), resp.body
    return resp.json


# -- add ---------------------------------------------------------------------------------------
async def test_add_members_appends_in_order_and_answers_the_view(server) -> None:
    api = Api(server.base_url)
    a, b, c, d = [await api.register() for _ in range(4)]
    chat = await api.create_group(a, b, title="Team")
    await api.send_text(a, chat["id"], "before c and d")

    view = (await add(api, a, chat["id"], [d.id, b.id, c.id, d.id])).json
    assert view["id"] == chat["id"]
    assert view["member_ids"] == [a.id, b.id, d.id, c.id]
    assert (view["type"], view["title"], view["last_seq"]) == ("group", "Team", 1)
    assert view["last_message"]["text"] == "before c and d"
    assert view["unread_count"] == 0  # the caller's view: a sent the message

    # The new members see the chat, its history, and can send.
    seen = await api.get_chat(c, chat["id"])
    assert seen["member_ids"] == view["member_ids"]
    assert seen["unread_count"] == 1
    assert chat["id"] in await chat_ids(api, d)
    resp = await api.get(f"/api/chats/{chat['id']}/messages", token=d.access_token)
    assert [m["text"] for m in resp.json["messages"]] == ["before c and d"]
    sent = await api.send_text(d, chat["id"], "hi from d")
    assert sent["seq"] == 2


async def test_any_member_may_add_and_existing_members_change_nothing(server) -> None:
    api = Api(server.base_url)
    a, b, c = [await api.register() for _ in range(3)]
    chat = await api.create_group(a, b)
    view = (await add(api, b, chat["id"], [c.id])).json  # b is not the creator
    assert view["member_ids"] == [a.id, b.id, c.id]
    again = (await add(api, c, chat["id"], [a.id, c.id, b.id])).json
    assert again["member_ids"] == [a.id, b.id, c.id]
    assert again["created_at"] == chat["created_at"]


async def test_add_unknown_users_is_unknown_members_and_adds_nobody(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    chat = await api.create_group(a)
    resp = await add(api, a, chat["id"], [b.id, NO_SUCH_ID], status=422)
    error = expect_error(resp, 422, "unknown_members", field="user_ids")
    assert NO_SUCH_ID in error["message"]
    assert (await api.get_chat(a, chat["id"]))["member_ids"] == [a.id]
    await expect_chat_hidden(api, chat["id"], b.access_token)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "user_ids"),
        ({"user_ids": None}, "user_ids"),
        ({"user_ids": []}, "user_ids"),
        ({"user_ids": "6745a1f0c2b9e81d4a3f0b11"}, "user_ids"),
        ({"user_ids": ["not-an-id"]}, "user_ids"),
        ({"user_ids": [123]}, "user_ids"),
        ({"user_ids": [{"$ne": None}]}, "user_ids.$ne"),
        ([], "body"),
    ],
)
async def test_add_with_a_bad_body_is_a_validation_error(server, body: Any, field: str) -> None:
    api = Api(server.base_url)
    a = await api.register()
    chat = await api.create_group(a)
    resp = await api.post(members_path(chat["id"]), body, token=a.access_token)
    expect_error(resp, 422, "validation_error", field=field)


async def test_add_to_a_direct_chat_is_not_a_group(server) -> None:
    api = Api(server.base_url)
    a, b, c = [await api.register() for _ in range(3)]
    chat = await direct_chat(api, a, b)
    expect_error(await add(api, a, chat["id"], [c.id], status=422), 422, "not_a_group")
    # checked before the users are looked up
    resp = await add(api, a, chat["id"], [NO_SUCH_ID], status=422)
    expect_error(resp, 422, "not_a_group")
    assert sorted((await api.get_chat(a, chat["id"]))["member_ids"]) == sorted([a.id, b.id])


async def test_add_by_a_non_member_is_chat_not_found(server) -> None:
    api = Api(server.base_url)
    a, b, outsider = [await api.register() for _ in range(3)]
    chat = await api.create_group(a)
    for chat_id in (chat["id"], NO_SUCH_ID, "not-an-id"):
        resp = await add(api, outsider, chat_id, [outsider.id], status=404)
        expect_error(resp, 404, "chat_not_found")
    # nobody can let themselves in, not even with a valid user list
    resp = await add(api, outsider, chat["id"], [b.id], status=404)
    expect_error(resp, 404, "chat_not_found")
    # field checks come first (order of checks, API_CONTRACT.md §1)
    resp = await api.post(members_path(chat["id"]), {"user_ids": 1}, token=outsider.access_token)
    expect_error(resp, 422, "validation_error", field="user_ids")
    assert (await api.get_chat(a, chat["id"]))["member_ids"] == [a.id]


async def test_members_endpoints_need_a_token(server) -> None:
    api = Api(server.base_url)
    a = await api.register()
    chat = await api.create_group(a)
    resp = await api.post(members_path(chat["id"]), {"user_ids": [a.id]})
    expect_error(resp, 401, "unauthorized")
    resp = await api.request("DELETE", f"{members_path(chat['id'])}/{a.id}", token="garbage")
    expect_error(resp, 401, "invalid_token")


async def test_wrong_methods_answer_405(server) -> None:
    api = Api(server.base_url)
    a = await api.register()
    chat = await api.create_group(a)
    resp = await api.get(members_path(chat["id"]), token=a.access_token)
    error = expect_error(resp, 405, "method_not_allowed")
    assert error
    assert resp.header("Allow") == "POST, OPTIONS"
    resp = await api.post(f"{members_path(chat['id'])}/{a.id}", {}, token=a.access_token)
    expect_error(resp, 405, "method_not_allowed")
    assert resp.header("Allow") == "DELETE, OPTIONS"


# -- leave -------------------------------------------------------------------------------------
async def test_leave_hides_the_chat_from_the_one_who_left(server) -> None:
    api = Api(server.base_url)
    a, b, c = [await api.register() for _ in range(3)]
    chat = await api.create_group(a, b, c)
    await api.send_text(b, chat["id"], "bye soon")

    resp = await leave(api, b, chat["id"], b.id)
    assert resp.status == 204, resp.body
    assert resp.body == b""

    assert (await api.get_chat(a, chat["id"]))["member_ids"] == [a.id, c.id]
    assert chat["id"] not in await chat_ids(api, b)
    await expect_chat_hidden(api, chat["id"], b.access_token)
    # leaving again: no longer a member, so the chat does not exist for b
    expect_error(await leave(api, b, chat["id"], b.id), 404, "chat_not_found")
    # the history stays for the others
    resp = await api.get(f"/api/chats/{chat['id']}/messages", token=c.access_token)
    assert [m["text"] for m in resp.json["messages"]] == ["bye soon"]

    # a member can add b back: at the end of member_ids
    view = (await add(api, c, chat["id"], [b.id])).json
    assert view["member_ids"] == [a.id, c.id, b.id]
    assert (await api.get_chat(b, chat["id"]))["last_seq"] == 1


async def test_the_creator_may_leave_too(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    chat = await api.create_group(a, b)
    assert (await leave(api, a, chat["id"], a.id)).status == 204
    assert (await api.get_chat(b, chat["id"]))["member_ids"] == [b.id]
    assert (await leave(api, b, chat["id"], b.id)).status == 204  # the last one
    await expect_chat_hidden(api, chat["id"], a.access_token)
    await expect_chat_hidden(api, chat["id"], b.access_token)


async def test_removing_someone_else_is_forbidden(server) -> None:
    api = Api(server.base_url)
    a, b, outsider = [await api.register() for _ in range(3)]
    chat = await api.create_group(a, b)
    for user_id in (b.id, outsider.id, NO_SUCH_ID, "not-an-id"):
        expect_error(await leave(api, a, chat["id"], user_id), 403, "forbidden")
    assert (await api.get_chat(a, chat["id"]))["member_ids"] == [a.id, b.id]


async def test_leave_by_a_non_member_is_chat_not_found(server) -> None:
    api = Api(server.base_url)
    a, outsider = await api.register(), await api.register()
    chat = await api.create_group(a)
    for chat_id in (chat["id"], NO_SUCH_ID, "not-an-id"):
        expect_error(await leave(api, outsider, chat_id, outsider.id), 404, "chat_not_found")
        # not "forbidden": the chat does not exist for the caller
        expect_error(await leave(api, outsider, chat_id, a.id), 404, "chat_not_found")


async def test_leaving_a_direct_chat_is_not_a_group(server) -> None:
    api = Api(server.base_url)
    a, b = await api.register(), await api.register()
    chat = await direct_chat(api, a, b)
    expect_error(await leave(api, a, chat["id"], a.id), 422, "not_a_group")
    expect_error(await leave(api, a, chat["id"], b.id), 422, "not_a_group")
    assert sorted((await api.get_chat(b, chat["id"]))["member_ids"]) == sorted([a.id, b.id])


# -- the member limit --------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def small_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    """A server with ``MAX_GROUP_MEMBERS=3``."""
    env = server_env(request.param, request, str(tmp_path_factory.mktemp("small")))
    env["MAX_GROUP_MEMBERS"] = "3"
    proc = MessengerServer(env).start()
    yield proc
    proc.stop()


async def test_adding_past_the_member_limit_is_refused(small_server) -> None:
    api = Api(small_server.base_url)
    a, b, c, d = [await api.register() for _ in range(4)]
    chat = await api.create_group(a, b)
    resp = await add(api, a, chat["id"], [c.id, d.id], status=422)
    expect_error(resp, 422, "validation_error", field="user_ids")
    resp = await add(api, a, chat["id"], [c.id, d.id, b.id, a.id], status=422)  # > 3 entries
    expect_error(resp, 422, "validation_error", field="user_ids")
    assert (await api.get_chat(a, chat["id"]))["member_ids"] == [a.id, b.id]

    view = (await add(api, a, chat["id"], [b.id, c.id])).json  # b is a member: 3 in all
    assert view["member_ids"] == [a.id, b.id, c.id]
    resp = await add(api, a, chat["id"], [d.id], status=422)
    expect_error(resp, 422, "validation_error", field="user_ids")
    assert (await leave(api, b, chat["id"], b.id)).status == 204
    assert (await add(api, a, chat["id"], [d.id])).json["member_ids"] == [a.id, c.id, d.id]
