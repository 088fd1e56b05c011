"""Long polling (``GET /api/events``) against the running server, alone and with WebSockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import server_env
from tests.support.api import Account, Api, expect_error
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient

POLL_ENV = {"TYPING_TTL_SECONDS": "30", "PRESENCE_GRACE_SECONDS": "0.5"}


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def poll_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    tmp_dir = str(tmp_path_factory.mktemp(f"poll-{request.param}"))
    proc = MessengerServer({**server_env(request.param, request, tmp_dir), **POLL_ENV}).start()
    yield proc
    proc.stop()


@pytest.fixture
def api(poll_server: MessengerServer) -> Api:
    return Api(poll_server.base_url)


async def poll(api: Api, who: Account, after: str | None, wait: float = 10) -> dict[str, Any]:
    query = f"?timeout={wait}" + ("" if after is None else f"&last_event_id={quote(after)}")
    resp = await api.get("/api/events" + query, token=who.access_token)
    assert resp.status == 200, resp.body
    return resp.json


async def test_first_poll_answers_at_once_with_the_cursor(api: Api) -> None:
    ann = await api.register()
    started = time.monotonic()
    body = await poll(api, ann, None, wait=30)
    assert body["events"] == [] and body["last_event_id"].startswith("v1.")
    assert time.monotonic() - started < 10  # it did not wait for the 30 s timeout


async def test_poll_waits_until_an_event_arrives(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    cursor = (await poll(api, bob, None))["last_event_id"]
    waiting = asyncio.ensure_future(poll(api, bob, cursor, wait=30))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    sent = await api.send_text(ann, chat["id"], "wake up")
    body = await asyncio.wait_for(waiting, 20)
    assert [e["type"] for e in body["events"]] == ["new_message"]
    assert body["events"][0]["message"] == sent
    assert body["last_event_id"] == body["events"][0]["event_id"] != cursor


async def test_poll_returns_waiting_events_in_order_and_times_out_empty(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    cursor = (await poll(api, bob, None))["last_event_id"]
    sent = [await api.send_text(ann, chat["id"], f"m{i}") for i in range(4)]
    body = await poll(api, bob, cursor)
    assert [e["message"] for e in body["events"]] == sent
    ids = [e["event_id"] for e in body["events"]]
    assert len(set(ids)) == len(ids) and body["last_event_id"] == ids[-1]
    again = await poll(api, bob, body["last_event_id"], wait=0.3)
    assert again == {"events": [], "last_event_id": body["last_event_id"]}


async def test_a_cursor_that_cannot_be_served_gets_resync_required(api: Api) -> None:
    ann = await api.register()
    now = (await poll(api, ann, None))["last_event_id"]
    prefix, epoch, _offset = now.split(".")
    for cursor in (f"{prefix}.{epoch}.999999",  # ahead of what is stored
                   f"{prefix}.{'0' * len(epoch)}.0",  # another database's epoch
                   "7", "v2.whatever"):  # another version's (the old event log's integers)
        body = await poll(api, ann, cursor)
        assert [e["type"] for e in body["events"]] == ["resync_required"]
        assert body["last_event_id"] == body["events"][0]["event_id"] == now


async def test_bad_poll_parameters_are_422(api: Api) -> None:
    ann = await api.register()
    for query in ("?last_event_id=-1", "?last_event_id=abc", "?last_event_id=v1.x.1",
                  "?timeout=999", "?timeout=x"):
        resp = await api.get("/api/events" + query, token=ann.access_token)
        expect_error(resp, 422, "validation_error")
    expect_error(await api.get("/api/events"), 401, "unauthorized")


async def test_a_polling_client_and_a_websocket_client_converse(
    poll_server: MessengerServer, api: Api
) -> None:
    ann, bob = await api.register(), await api.register()  # ann polls, bob uses a socket
    chat = await api.create_group(ann, bob)
    bob_ws = await WsClient.connect(poll_server.base_url, bob.access_token)
    cursor = (await poll(api, ann, None))["last_event_id"]

    # ann's polling makes her online for bob
    online = await bob_ws.expect(lambda f: f.get("type") == "presence" and f["user_id"] == ann.id)
    assert online["status"] == "online"

    # ann sends and types over REST; bob sees both
    sent = await api.send_text(ann, chat["id"], "from a poller")
    assert (await bob_ws.expect("new_message"))["message"] == sent
    resp = await api.post(f"/api/chats/{chat['id']}/typing", {"is_typing": True},
                          token=ann.access_token)
    assert resp.status == 204
    typing = await bob_ws.expect("typing")
    assert (typing["user_id"], typing["is_typing"]) == (ann.id, True)

    # bob answers, types and reads over the socket; ann's polls see all of it, in order
    ack = await bob_ws.request({"type": "send_message", "chat_id": chat["id"],
                                "text": "from a socket", "client_msg_id": "b1"}, "message_sent")
    await bob_ws.send({"type": "typing_start", "chat_id": chat["id"]})
    await bob_ws.send({"type": "mark_read", "chat_id": chat["id"], "seq": 2})
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while not any(e["type"] == "read" and e["user_id"] == bob.id for e in seen):
        assert time.monotonic() < deadline, seen
        body = await poll(api, ann, cursor)
        seen += body["events"]
        cursor = body["last_event_id"]
    # (typing is not stored: a poll sees it only if it was waiting at that moment)
    kinds = [(e["type"], e.get("user_id") or e.get("message", {}).get("sender_id"))
             for e in seen if e["type"] in ("new_message", "read")]
    assert kinds == [("new_message", ann.id), ("new_message", bob.id), ("read", bob.id)]
    mine = [e for e in seen if e["type"] == "new_message" and e["message"]["sender_id"] == bob.id]
    assert mine[0]["message"] == ack["message"]
    stored = [e["event_id"] for e in seen if e["type"] != "typing"]
    assert len(set(stored)) == len(stored)  # each stored event once, each with its own cursor

    # ann stops polling: after the grace period bob sees her go offline
    offline = await bob_ws.expect(
        lambda f: f.get("type") == "presence" and f["user_id"] == ann.id
        and f["status"] == "offline", timeout=10)
    assert offline["last_seen"].endswith("Z")
    bob_ws.close()


async def test_typing_endpoint_checks_its_input(api: Api) -> None:
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    path = f"/api/chats/{chat['id']}/typing"
    expect_error(await api.post(path, {"is_typing": "yes"}, token=ann.access_token),
                 422, "validation_error")
    eve = await api.register()
    expect_error(await api.post(path, {"is_typing": True}, token=eve.access_token),
                 404, "chat_not_found")
