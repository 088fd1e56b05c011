"""Messages: sending, per-chat seq, history paging, idempotent retries, concurrency."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest

from tests.support.api import Account, Api, expect_error, is_json_response

ID = re.compile(r"^[0-9a-f]{24}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MESSAGE_KEYS = {
    "id", "chat_id", "seq", "sender_id", "text", "client_msg_id", "created_at", "attachments"
}


async def history(api: Api, who: Account, chat_id: str, query: str = "") -> dict[str, Any]:
    resp = await api.get(f"/api/chats/{chat_id}/messages{query}", token=who.access_token)
    assert resp.status == 200, resp.body
    assert is_json_response(resp)
    body = resp.json
    assert set(body) == {"messages", "has_more"}
    assert isinstance(body["has_more"], bool)
    return body


async def last_seq(api: Api, who: Account, chat_id: str) -> int:
    return (await api.get_chat(who, chat_id))["last_seq"]


async def pair_chat(api: Api) -> tuple[Account, Account, str]:
    a, b = await api.register(), await api.register()
    return a, b, (await api.create_group(a, b))["id"]


# -- send --------------------------------------------------------------------------------------


async def test_send_201_shape(server) -> None:
    api = Api(server.base_url)
    a, _b, cid = await pair_chat(api)
    resp = await api.post(
        f"/api/chats/{cid}/messages", {"text": "  hello, world  "}, token=a.access_token
    )
    assert resp.status == 201, resp.body
    assert is_json_response(resp)
    msg = resp.json
    assert set(msg) == MESSAGE_KEYS
    assert ID.match(msg["id"])
    assert msg["chat_id"] == cid
    assert msg["seq"] == 1
    assert msg["sender_id"] == a.id
    assert msg["text"] == "  hello, world  "  # stored as sent
    assert msg["client_msg_id"] is None
    assert TIMESTAMP.match(msg["created_at"])
    # History returns exactly what was sent.
    assert (await history(api, a, cid))["messages"] == [msg]


async def test_send_with_client_msg_id_echoes_it(server) -> None:
    api = Api(server.base_url)
    a, _b, cid = await pair_chat(api)
    msg = await api.send_text(a, cid, "hi", client_msg_id="c-1")
    assert msg["client_msg_id"] == "c-1"
    null_id = await api.post(
        f"/api/chats/{cid}/messages", {"text": "x", "client_msg_id": None}, token=a.access_token
    )
    assert null_id.status == 201, null_id.body
    assert null_id.json["client_msg_id"] is None


async def test_seq_counts_up_per_chat(server) -> None:
    api = Api(server.base_url)
    a, b, cid = await pair_chat(api)
    other = (await api.create_group(a, b))["id"]
    seqs = [(await api.send_text(who, cid, f"m{i}"))["seq"] for i, who in enumerate((a, b, a))]
    assert seqs == [1, 2, 3]
    # Another chat has its own counter.
    assert (await api.send_text(b, other, "elsewhere"))["seq"] == 1
    assert await last_seq(api, a, cid) == 3


async def test_text_of_max_length_ok_and_unicode_kept(server) -> None:
    api = Api(server.base_url)
    a, _b, cid = await pair_chat(api)
    assert (await api.send_text(a, cid, "x" * 4000))["text"] == "x" * 4000
    text = "Привет 👋 — ünïcode\nsecond line"
    assert (await api.send_text(a, cid, text))["text"] == text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": " \n\t "}, "text"),
        ({"text": "x" * 4001}, "text"),
        ({"text": 42}, "text"),
        ({"text": ["hi"]}, "text"),
        ({"text": None}, "text"),
        ({}, "text"),
        ({"text": "ok", "client_msg_id": 7}, "client_msg_id"),
        ({"text": "ok", "client_msg_id": ""}, "client_msg_id"),
        ({"text": "ok", "client_msg_id": "c" * 129}, "client_msg_id"),
        ({"text": "ok", "client_msg_id": {"id": "x"}}, "client_msg_id"),
    ],
)
async def test_send_invalid_422(server, body, field: str) -> None:
    api = Api(server.base_url)
    a, _b, cid = await pair_chat(api)
    resp = await api.post(f"/api/chats/{cid}/messages", body, token=a.access_token)
    expect_error(resp, 422, "validation_error", field)
    assert await last_seq(api, a, cid) == 0


async def test_send_requires_auth(server) -> None:
    api = Api(server.base_url)
    _a, _b, cid = await pair_chat(api)
    expect_error(await api.post(f"/api/chats/{cid}/messages", {"text": "x"}), 401, "unauthorized")
    expect_error(await api.get(f"/api/chats/{cid}/messages"), 401, "unauthorized")


# -- history -----------------------------------------------------------------------------------


async def test_history_pages_walk_everything_once_in_order(server) -> None:
    api = Api(server.base_url)
    a, b, cid = await pair_chat(api)
    sent = [await api.send_text(a if i % 2 else b, cid, f"m{i}") for i in range(7)]
    assert [m["seq"] for m in sent] == list(range(1, 8))

    # No parameters: everything (fewer than the default 50), oldest first.
    full = await history(api, a, cid)
    assert full["messages"] == sent
    assert full["has_more"] is False

    # Newest page first, oldest-first within the page.
    page = await history(api, a, cid, "?limit=3")
    assert [m["seq"] for m in page["messages"]] == [5, 6, 7]
    assert page["has_more"] is True

    walked: list[dict[str, Any]] = []
    pages: list[list[int]] = []
    query = "?limit=3"
    while True:
        page = await history(api, b, cid, query)
        pages.append([m["seq"] for m in page["messages"]])
        walked = page["messages"] + walked
        if not page["has_more"]:
            break
        query = f"?limit=3&before_id={page['messages'][0]['id']}"
        assert len(pages) < 10, pages
    assert pages == [[5, 6, 7], [2, 3, 4], [1]]
    assert walked == sent


async def test_history_exact_fit_has_no_more(server) -> None:
    api = Api(server.base_url)
    a, _b, cid = await pair_chat(api)
    sent = [await api.send_text(a, cid, f"m{i}") for i in range(4)]
    page = await history(api, a, cid, "?limit=4")
    assert page["messages"] == sent
    assert page["has_more"] is False
    page = await history(api, a, cid, f"?limit=2&before_id={sent[2]['id']}")
    assert page["messages"] == sent[:2]
    assert page["has_more"] is False
    page = await history(api, a, cid, f"?before_id={sent[0]['id']}")
    assert page == {"messages": [], "has_more": False}
    page = await history(api, a, cid, "?limit=1")
    assert page == {"messages": [sent[3]], "has_more": True}
    page = await history(api, a, cid, "?limit=200")
    assert page["messages"] == sent


async def test_history_of_empty_chat(server) -> None:
    api = Api(server.base_url)
    a, _b, cid = await pair_chat(api)
    assert await history(api, a, cid) == {"messages": [], "has_more": False}


@pytest.mark.parametrize("limit", ["0", "201", "abc", "-1", "", "1.5", "10a", "1e2"])
async def test_history_bad_limit_422(server, limit: str) -> None:
    api = Api(server.base_url)
    a, _b, cid = await pair_chat(api)
    resp = await api.get(f"/api/chats/{cid}/messages?limit={limit}", token=a.access_token)
    expect_error(resp, 422, "validation_error", "limit")


async def test_history_bad_before_id_422(server) -> None:
    api = Api(server.base_url)
    a, b, cid = await pair_chat(api)
    other = (await api.create_group(a, b))["id"]
    await api.send_text(a, cid, "here")
    foreign = await api.send_text(a, other, "there")
    for before_id in ("nope", "A" * 24, "a" * 25, foreign["id"], "0123456789abcdef01234567"):
        resp = await api.get(
            f"/api/chats/{cid}/messages?before_id={before_id}", token=a.access_token
        )
        expect_error(resp, 422, "validation_error", "before_id")


# -- idempotent retries ------------------------------------------------------------------------


async def test_client_msg_id_replay_returns_original(server) -> None:
    api = Api(server.base_url)
    a, b, cid = await pair_chat(api)
    first = await api.send_text(a, cid, "once", client_msg_id="retry-1")
    assert await last_seq(api, a, cid) == 1

    replay = await api.post(
        f"/api/chats/{cid}/messages",
        {"text": "once", "client_msg_id": "retry-1"},
        token=a.access_token,
    )
    assert replay.status == 200, replay.body
    assert replay.json == first
    # Even with a different text the original comes back and nothing is stored.
    changed = await api.post(
        f"/api/chats/{cid}/messages",
        {"text": "changed", "client_msg_id": "retry-1"},
        token=a.access_token,
    )
    assert changed.status == 200, changed.body
    assert changed.json == first
    assert await last_seq(api, a, cid) == 1
    assert (await history(api, a, cid))["messages"] == [first]

    # Idempotency is per sender and per chat: these are new messages.
    by_b = await api.send_text(b, cid, "b too", client_msg_id="retry-1")
    assert by_b["id"] != first["id"]
    assert by_b["seq"] == 2
    other = (await api.create_group(a, b))["id"]
    elsewhere = await api.send_text(a, other, "other chat", client_msg_id="retry-1")
    assert elsewhere["seq"] == 1
    assert await last_seq(api, a, cid) == 2


# -- concurrency -------------------------------------------------------------------------------


async def test_concurrent_senders_get_gapless_unique_seqs(server) -> None:
    api = Api(server.base_url)
    accounts = [await api.register(name=f"S{i}") for i in range(5)]
    cid = (await api.create_group(accounts[0], *accounts[1:]))["id"]
    # On MongoDB fewer: the mongoeco test server slows down with every document inserted, and
    # each message is a stream entry per member (see the README) — the same code path either way.
    senders, per_sender = (20, 10) if server.backend == "sqlite" else (10, 4)

    async def sender(n: int) -> list[tuple[int, str, int]]:
        who = accounts[n % len(accounts)]
        out = []
        for i in range(per_sender):
            text = f"s{n}-m{i}"
            resp = await api.post(
                f"/api/chats/{cid}/messages", {"text": text}, token=who.access_token
            )
            out.append((resp.status, text, resp.json.get("seq") if resp.status == 201 else -1))
        return out

    results = await asyncio.gather(*(sender(n) for n in range(senders)))
    flat = [r for rs in results for r in rs]
    assert [status for status, _, _ in flat] == [201] * (senders * per_sender), flat
    assert sorted(seq for _, _, seq in flat) == list(range(1, senders * per_sender + 1))
    # Each sender's sequential messages got increasing seqs.
    for rs in results:
        seqs = [seq for _, _, seq in rs]
        assert seqs == sorted(seqs)

    assert await last_seq(api, accounts[1], cid) == senders * per_sender
    page = await history(api, accounts[1], cid, "?limit=200")
    assert page["has_more"] is False
    msgs = page["messages"]
    assert [m["seq"] for m in msgs] == list(range(1, senders * per_sender + 1))
    assert len({m["id"] for m in msgs}) == senders * per_sender
    by_seq = {seq: text for _, text, seq in flat}
    assert all(m["text"] == by_seq[m["seq"]] for m in msgs)


async def test_concurrent_idempotent_retries_store_one_message(server) -> None:
    api = Api(server.base_url)
    a, b, cid = await pair_chat(api)
    client_msg_id = f"retry-{uuid.uuid4().hex}"

    responses = await asyncio.gather(
        *(
            api.post(
                f"/api/chats/{cid}/messages",
                {"text": "only once", "client_msg_id": client_msg_id},
                token=a.access_token,
            )
            for _ in range(10)
        )
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 9 + [201], [(r.status, r.body) for r in responses]
    ids = {r.json["id"] for r in responses}
    assert len(ids) == 1
    assert {r.json["seq"] for r in responses} == {1}
    assert await last_seq(api, b, cid) == 1
    page = await history(api, b, cid)
    assert [m["id"] for m in page["messages"]] == list(ids)
    assert page["messages"][0]["client_msg_id"] == client_msg_id
