"""The WebSocket protocol against the running server, with real sockets, on both stores.

Covers API_CONTRACT.md §8: the handshake, ack + broadcast, typing, presence, reads, idempotent
sends over WebSocket and REST, resume with ``last_event_id``, bad frames, and 20 concurrent
senders whose 1000 messages every member session receives once, in ``seq`` order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import server_env
from tests.support.api import Account, Api
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient, in_stream, new_messages

REALTIME_ENV = {
    "TYPING_TTL_SECONDS": "1",
    "PRESENCE_GRACE_SECONDS": "1.5",  # a reload (close + reconnect) fits well inside
    "ALLOWED_ORIGINS": "https://chat.example.com",
}


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def rt_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    tmp_dir = str(tmp_path_factory.mktemp(f"rt-{request.param}"))
    env = {**server_env(request.param, request, tmp_dir), **REALTIME_ENV}
    proc = MessengerServer(env).start()
    proc.backend = request.param
    yield proc
    proc.stop()


@pytest.fixture
def api(rt_server: MessengerServer) -> Api:
    return Api(rt_server.base_url)


async def connect(server: MessengerServer, who: Account, **kw: Any) -> WsClient:
    return await WsClient.connect(server.base_url, who.access_token, **kw)


def cmid() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


async def handshake_status(server: MessengerServer, query: str,
                           headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """Attempt a WebSocket handshake that must be refused; returns (status, JSON body)."""
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **(headers or {})}
    resp = await AsyncHTTPClient().fetch(
        HTTPRequest(server.base_url + "/ws" + query, headers=upgrade), raise_error=False)
    assert resp.code != 101
    assert resp.headers.get("Content-Type", "").startswith("application/json")
    return resp.code, orjson.loads(resp.body or b"{}")


# -- handshake ---------------------------------------------------------------------------------
async def test_handshake_refuses_missing_bad_and_refresh_tokens(
    rt_server: MessengerServer, api: Api
) -> None:
    ann = await api.register()
    assert (await handshake_status(rt_server, ""))[1]["error"]["code"] == "unauthorized"
    status, body = await handshake_status(rt_server, "?token=garbage")
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    status, body = await handshake_status(rt_server, f"?token={ann.refresh_token}")
    assert (status, body["error"]["code"]) == (401, "invalid_token")


async def test_handshake_checks_origin_and_cursor(rt_server: MessengerServer, api: Api) -> None:
    ann = await api.register()
    status, body = await handshake_status(
        rt_server, f"?token={ann.access_token}", {"Origin": "https://evil.example.net"})
    assert (status, body["error"]["code"]) == (403, "origin_not_allowed")
    status, body = await handshake_status(rt_server, f"?token={ann.access_token}&last_event_id=x")
    assert (status, body["error"]["code"]) == (422, "validation_error")
    for origin in ("https://chat.example.com", f"http://127.0.0.1:{rt_server.port}"):
        client = await connect(rt_server, ann, headers={"Origin": origin})
        client.close()


async def test_plain_http_to_ws_is_a_json_error(rt_server: MessengerServer, api: Api) -> None:
    ann = await api.register()
    resp = await AsyncHTTPClient().fetch(
        f"{rt_server.base_url}/ws?token={ann.access_token}", raise_error=False)
    assert resp.code == 400
    assert b"websocket_required" in resp.body


# -- messages ----------------------------------------------------------------------------------
async def test_send_acks_sender_and_reaches_every_member_session_only(
    rt_server: MessengerServer, api: Api
) -> None:
    ann, bob, eve = await api.register(), await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    eves_chat = await api.create_group(eve, ann)
    ann1, ann2 = await connect(rt_server, ann), await connect(rt_server, ann)
    bob1, eve1 = await connect(rt_server, bob), await connect(rt_server, eve)

    key = cmid()
    ack = await ann1.request({"type": "send_message", "chat_id": chat["id"], "text": "hi",
                              "client_msg_id": key}, "message_sent")
    assert ack["type"] == "message_sent" and ack["client_msg_id"] == key
    message = ack["message"]
    assert (message["seq"], message["text"], message["sender_id"]) == (1, "hi", ann.id)
    for other in (ann2, bob1):
        got = await other.expect("new_message")
        assert got["message"] == message
    # the sender's other session is at the same position of the same user's stream
    assert ann2.frames[-1]["event_id"] == ack["event_id"]

    # eve is not a member: the next message she sees is the one in her own chat
    await api.send_text(ann, eves_chat["id"], "marker")
    got = await eve1.expect(new_messages())
    assert got["message"]["text"] == "marker"
    assert all(f.get("type") != "new_message" or f["message"]["chat_id"] != chat["id"]
               for f in eve1.frames)
    for client in (ann1, ann2, bob1, eve1):
        client.close()


async def test_rest_send_reaches_websocket_sessions(rt_server: MessengerServer, api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    ann1, bob1 = await connect(rt_server, ann), await connect(rt_server, bob)
    sent = await api.send_text(ann, chat["id"], "over rest")
    for client in (ann1, bob1):  # a REST sender has no session to ack: all get new_message
        assert (await client.expect("new_message"))["message"] == sent
    ann1.close()
    bob1.close()


async def test_resend_of_a_client_msg_id_over_ws_and_rest_stores_one_message(
    rt_server: MessengerServer, api: Api
) -> None:
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    ann1 = await connect(rt_server, ann)
    key = cmid()
    frame = {"type": "send_message", "chat_id": chat["id"], "text": "once", "client_msg_id": key}
    first = await ann1.request(frame, "message_sent")
    again = await ann1.request(frame, "message_sent")
    assert again["message"] == first["message"]
    rest = await api.post(f"/api/chats/{chat['id']}/messages",
                          {"text": "once", "client_msg_id": key}, token=ann.access_token)
    assert rest.status == 200 and rest.json == first["message"]
    history = await api.get(f"/api/chats/{chat['id']}/messages", token=ann.access_token)
    assert [m["id"] for m in history.json["messages"]] == [first["message"]["id"]]
    ann1.close()


# -- typing, presence, reads ------------------------------------------------------------------
async def test_typing_start_stop_and_expiry(rt_server: MessengerServer, api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    ann1, bob1 = await connect(rt_server, ann), await connect(rt_server, bob)

    def typing(flag: bool) -> Any:
        return lambda f: f.get("type") == "typing" and f["is_typing"] is flag

    await ann1.send({"type": "typing_start", "chat_id": chat["id"]})
    await ann1.send({"type": "typing_start", "chat_id": chat["id"]})  # a repeat: no new event
    started = await bob1.expect(typing(True))
    assert (started["chat_id"], started["user_id"]) == (chat["id"], ann.id)
    await ann1.send({"type": "typing_stop", "chat_id": chat["id"]})
    await bob1.expect(typing(False))
    assert sum(1 for f in bob1.frames if f.get("type") == "typing" and f["is_typing"]) == 1

    await ann1.send({"type": "typing_start", "chat_id": chat["id"]})
    await bob1.expect(typing(True))
    expired = await bob1.expect(typing(False), timeout=5)  # TYPING_TTL_SECONDS=1
    assert expired["user_id"] == ann.id
    # the typist does not get their own typing events
    await api.send_text(bob, chat["id"], "marker")
    await ann1.expect("new_message")
    assert not [f for f in ann1.frames if f.get("type") == "typing"]
    ann1.close()
    bob1.close()


async def test_presence_online_offline_with_grace(rt_server: MessengerServer, api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    ann1 = await connect(rt_server, ann)

    def presence(status: str) -> Any:
        return lambda f: (f.get("type") == "presence" and f["user_id"] == bob.id
                          and f["status"] == status)

    bob1 = await connect(rt_server, bob)
    online = await ann1.expect(presence("online"))
    assert online["last_seen"].endswith("Z")

    # a reload inside the grace period does not flap
    bob1.close()
    bob2 = await connect(rt_server, bob)
    await api.send_text(bob, chat["id"], "still here")
    await ann1.expect("new_message")
    await asyncio.sleep(0)  # frames already received are all in ann1.frames now
    assert not [f for f in ann1.frames if presence("offline")(f)]

    bob2.close()
    offline = await ann1.expect(presence("offline"), timeout=5)
    assert offline["last_seen"] >= online["last_seen"]
    ann1.close()


async def test_a_new_session_hears_who_is_online_right_after_ready(
    rt_server: MessengerServer, api: Api
) -> None:
    """The presence snapshot (§8): online contacts, right after ready, nobody else."""
    ann, bob, carol, stranger = [await api.register() for _ in range(4)]
    await api.create_group(ann, bob)
    await api.create_group(bob, carol)  # carol is a contact, but offline
    ann1 = await connect(rt_server, ann)
    stranger1 = await connect(rt_server, stranger)  # online, but shares no chat with bob
    bob1 = await connect(rt_server, bob)
    ready = bob1.frames[0]
    snapshot = await bob1.next_frame()
    assert snapshot == {"event_id": ready["event_id"], "type": "presence", "user_id": ann.id,
                        "status": "online", "last_seen": snapshot["last_seen"]}
    assert snapshot["last_seen"].endswith("Z")
    chat = await api.create_group(ann, bob)
    await api.send_text(ann, chat["id"], "after the snapshot")
    await bob1.expect("new_message")
    presences = [f["user_id"] for f in bob1.frames if f.get("type") == "presence"]
    assert presences == [ann.id]
    for client in (ann1, stranger1, bob1):
        client.close()


async def test_mark_read_reaches_members_and_moves_unread(
    rt_server: MessengerServer, api: Api
) -> None:
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    for i in range(3):
        await api.send_text(ann, chat["id"], f"m{i}")
    assert (await api.get_chat(bob, chat["id"]))["unread_count"] == 3
    ann1, bob1 = await connect(rt_server, ann), await connect(rt_server, bob)
    await bob1.send({"type": "mark_read", "chat_id": chat["id"], "seq": 2})
    read = await ann1.expect("read")
    assert (read["chat_id"], read["user_id"], read["seq"], read["unread_count"]) == (
        chat["id"], bob.id, 2, 1)
    assert (await bob1.expect("read"))["event_id"] == read["event_id"]
    assert (await api.get_chat(bob, chat["id"]))["unread_count"] == 1
    ann1.close()
    bob1.close()


async def test_new_chat_reaches_members_as_an_event(rt_server: MessengerServer, api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    bob1 = await connect(rt_server, bob)
    chat = await api.create_group(ann, bob, title="fresh")
    created = await bob1.expect("chat_created")
    assert created["chat"]["id"] == chat["id"] and created["chat"]["title"] == "fresh"
    bob1.close()


# -- resume ------------------------------------------------------------------------------------
async def test_resume_delivers_every_missed_event_once_in_order(
    rt_server: MessengerServer, api: Api
) -> None:
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    bob1 = await connect(rt_server, bob)
    for i in range(3):
        await api.send_text(ann, chat["id"], f"seen {i}")
    seen = await bob1.collect(new_messages(chat["id"]), 3)
    cursor = seen[-1]["event_id"]
    bob1.close()

    missed = [await api.send_text(ann, chat["id"], f"missed {i}") for i in range(5)]
    bob2 = await connect(rt_server, bob, last_event_id=cursor)
    replayed = await bob2.collect(new_messages(chat["id"]), 5)
    assert [f["message"] for f in replayed] == missed
    ids = [f["event_id"] for f in replayed]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] > cursor

    live = await api.send_text(ann, chat["id"], "live")
    assert (await bob2.expect(new_messages(chat["id"])))["message"] == live
    texts = [f["message"]["text"] for f in bob2.frames if new_messages(chat["id"])(f)]
    assert texts == [m["text"] for m in missed] + ["live"]  # nothing twice
    bob2.close()


async def test_a_cursor_that_cannot_be_served_gets_resync_required(
    rt_server: MessengerServer, api: Api
) -> None:
    ann = await api.register()
    first = await connect(rt_server, ann)
    now = first.last_event_id
    first.close()
    prefix, epoch, _offset = now.split(".")
    for cursor in (f"{prefix}.{epoch}.999999", f"{prefix}.{'0' * len(epoch)}.0"):
        client = await connect(rt_server, ann, last_event_id=cursor)
        resync = await client.expect("resync_required")
        assert resync["event_id"] == client.frames[0]["event_id"] == now  # ready, then this
        client.close()


# -- bad frames --------------------------------------------------------------------------------
async def test_bad_frames_get_errors_and_the_socket_stays_usable(
    rt_server: MessengerServer, api: Api
) -> None:
    ann, bob, eve = await api.register(), await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    foreign = await api.create_group(eve, bob)
    client = await connect(rt_server, ann)

    async def error_for(frame: Any, ref: str | None = None) -> dict[str, Any]:
        await client.send(frame)
        got = await client.expect("error")
        assert got["ref"] == ref, got
        return got

    assert (await error_for("not json"))["code"] == "malformed_json"
    assert (await error_for("[1, 2]"))["code"] == "validation_error"
    assert (await error_for({"type": "dance", "ref": "r1"}, "r1"))["code"] == "unknown_type"
    missing = await error_for({"type": "send_message", "chat_id": chat["id"],
                               "client_msg_id": "k1"}, "k1")
    assert (missing["code"], missing["field"]) == ("validation_error", "text")
    no_key = await error_for({"type": "send_message", "chat_id": chat["id"], "text": "x"})
    assert no_key["field"] == "client_msg_id"
    assert (await error_for({"type": "mark_read", "chat_id": chat["id"], "seq": "1",
                             "ref": "r2"}, "r2"))["field"] == "seq"
    assert (await error_for({"type": "typing_start", "chat_id": {"$ne": ""}}))["code"] == \
        "validation_error"
    big = {"type": "send_message", "chat_id": chat["id"], "client_msg_id": "k2",
           "text": "x" * 70_000}
    assert (await error_for(big))["code"] == "frame_too_large"
    wrong = await error_for({"type": "send_message", "chat_id": foreign["id"], "text": "x",
                             "client_msg_id": "k3"}, "k3")
    assert wrong["code"] == "chat_not_found"
    unknown = await error_for({"type": "typing_start", "chat_id": "0" * 24, "ref": "r3"}, "r3")
    assert unknown["code"] == "chat_not_found"

    pong = await client.request({"type": "ping", "ref": "p1"}, "pong")
    assert pong["type"] == "pong"
    ack = await client.request({"type": "send_message", "chat_id": chat["id"], "text": "ok",
                                "client_msg_id": "k4"}, "message_sent")
    assert ack["message"]["seq"] == 1  # nothing before it was stored
    client.close()


async def test_rate_limit_answers_rate_limited_and_keeps_the_socket(
    rt_server: MessengerServer, api: Api
) -> None:
    ann = await api.register()
    client = await connect(rt_server, ann)
    for i in range(100):  # WS_BURST is 60
        await client.send({"type": "ping", "ref": f"p{i}"})
    frames = await client.collect(lambda f: f.get("type") in ("pong", "error"), 100)
    limited = [f for f in frames if f["type"] == "error"]
    assert limited and all(f["code"] == "rate_limited" for f in limited)
    assert len(frames) - len(limited) >= 60
    client.close()


async def stream_messages(client: WsClient, chat_id: str, count: int) -> list[dict[str, Any]]:
    """The client's first ``count`` stream events that are the chat's messages (a direct
    ``message_sent``, answering a retry, is outside the stream), reading on until it has them."""
    while True:
        got = [f for f in in_stream(client.frames) if new_messages(chat_id)(f)]
        if len(got) >= count:
            return got[:count]
        await client.next_frame(timeout=180)


# -- concurrency -------------------------------------------------------------------------------
@pytest.mark.timeout(240)
async def test_twenty_senders_fifty_messages_each_every_session_gets_all_in_order(
    rt_server: MessengerServer, api: Api
) -> None:
    # 20 x 50 on the embedded store; on MongoDB 6 x 6, because the mongoeco test server slows
    # down with every document inserted (each message is a stream entry per member here; see
    # the README) — the same code path either way.
    n_senders, per_sender = (20, 50) if rt_server.backend == "sqlite" else (6, 6)
    senders = [await api.register(name=f"s{i}") for i in range(n_senders)]
    watcher = await api.register(name="watcher")
    chat = await api.create_group(watcher, *senders)
    sockets = [await connect(rt_server, who) for who in senders]
    watchers = [await connect(rt_server, watcher), await connect(rt_server, watcher)]
    total = n_senders * per_sender

    def frame_of(i: int, j: int) -> dict[str, Any]:
        return {"type": "send_message", "chat_id": chat["id"], "text": f"{i}:{j}",
                "client_msg_id": f"{i}-{j}"}

    async def send_all(i: int) -> None:
        for j in range(per_sender):
            await sockets[i].send(frame_of(i, j))

    retried: set[int] = set()

    async def acknowledged(i: int) -> None:
        """Like a real client: a send answered ``service_unavailable`` (the database did not
        answer in time; a loaded test machine can make the test database miss its driver's
        heartbeat) is sent again, same ``client_msg_id``, until it is acknowledged."""
        client, pending = sockets[i], {f"{i}-{j}": j for j in range(per_sender)}
        while pending:
            frame = await client.next_frame(timeout=60)
            if frame["type"] == "message_sent":
                pending.pop(frame["client_msg_id"], None)
            elif frame["type"] == "error" and frame["ref"] in pending:
                assert frame["code"] == "service_unavailable", frame
                retried.add(i)
                await client.send(frame_of(i, pending[frame["ref"]]))

    await asyncio.gather(*(send_all(i) for i in range(n_senders)))
    await asyncio.gather(*(acknowledged(i) for i in range(n_senders)))
    received = [await stream_messages(client, chat["id"], total) for client in sockets + watchers]
    for got in received:
        assert [f["message"]["seq"] for f in got] == list(range(1, total + 1))
        assert len({f["event_id"] for f in got}) == total
    errors = [f for c in sockets + watchers for f in c.frames
              if f.get("type") == "error" and f["code"] != "service_unavailable"]
    assert errors == []
    # each sender's messages are stored once each, in its own order unless it had to retry
    for i in range(n_senders):
        mine = [f["message"]["text"] for f in received[i]
                if f["message"]["sender_id"] == senders[i].id]
        expected = [f"{i}:{j}" for j in range(per_sender)]
        assert (sorted(mine) == sorted(expected)) if i in retried else (mine == expected)
    for client in sockets + watchers:
        client.close()
