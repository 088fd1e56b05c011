"""Refused real-time requests are answers, not actor failures (actors/runtime.py ``refusals``).

A non-member's typing, read or send into someone else's chat answers 404 ``chat_not_found``
(REST) or an ``error`` frame (WebSocket). The chat's actor must keep running with its state: no
ERROR or traceback in the server's log, no restart (which would clear the members' typing
state), and no stop after ``max_restarts`` such requests. Against the running server, on both
stores.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from tests.support.api import Api
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient

REFUSALS = 10  # more than the actor's max_restarts (5): once, the sixth stopped the actor


def typing(user_id: str, flag: bool) -> Any:
    return lambda f: (f.get("type") == "typing" and f["user_id"] == user_id
                      and f["is_typing"] is flag)


async def wait_for_log_line(server: MessengerServer, needle: str, within: float = 10.0) -> None:
    """Wait until ``needle`` is in the server's log: every line written before it is there too."""
    deadline = time.monotonic() + within
    while not any(needle in line for line in server.log):
        assert time.monotonic() < deadline, f"{needle!r} never reached the log"
        await asyncio.sleep(0.02)


async def test_non_member_typing_does_not_fail_the_chat_actor(server: MessengerServer) -> None:
    api = Api(server.base_url)
    ann, bob, eve = await api.register(), await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    chat_path = f"/api/chats/{chat['id']}"
    ann_ws, bob_ws, eve_ws = [await WsClient.connect(server.base_url, who.access_token)
                              for who in (ann, bob, eve)]
    log_mark = len(server.log)

    await ann_ws.send({"type": "typing_start", "chat_id": chat["id"]})
    await bob_ws.expect(typing(ann.id, True))

    # eve is no member: every request is refused, over REST and over WebSocket
    for i in range(REFUSALS // 2):
        resp = await api.post(f"{chat_path}/typing", {"is_typing": i % 2 == 0},
                              token=eve.access_token)
        assert (resp.status, resp.error_code) == (404, "chat_not_found"), resp.body
        kind = "typing_start" if i % 2 == 0 else "typing_stop"
        error = await eve_ws.request({"type": kind, "chat_id": chat["id"], "ref": f"t{i}"},
                                     "error")
        assert (error["type"], error["code"]) == ("error", "chat_not_found"), error
    read_error = await eve_ws.request({"type": "mark_read", "chat_id": chat["id"], "seq": 0,
                                       "ref": "r1"}, "error")
    assert read_error["code"] == "chat_not_found"
    send_error = await eve_ws.request({"type": "send_message", "chat_id": chat["id"],
                                       "text": "let me in", "client_msg_id": "e1"}, "error")
    assert send_error["code"] == "chat_not_found"
    resp = await api.post(f"{chat_path}/read", {"seq": 0}, token=eve.access_token)
    assert resp.status == 404, resp.body

    # ann's typing state survived: her stop reaches bob (the TTL is 6 s; this is the stop)
    await ann_ws.send({"type": "typing_stop", "chat_id": chat["id"]})
    stopped = await bob_ws.expect(typing(ann.id, False), timeout=4)
    assert stopped["chat_id"] == chat["id"]
    # and the actor still serves its members
    await ann_ws.send({"type": "typing_start", "chat_id": chat["id"]})
    await bob_ws.expect(typing(ann.id, True))
    sent = await api.send_text(bob, chat["id"], "still here")
    assert sent["seq"] == 1

    # everything logged up to a marker request: refusals are 4xx access lines, nothing more
    marker = uuid.uuid4().hex[:24]
    assert (await api.get(f"/api/chats/{marker}", token=ann.access_token)).status == 404
    await wait_for_log_line(server, marker)
    logged = "".join(server.log[log_mark:])
    assert "Traceback" not in logged and " ERROR " not in logged, logged
    assert "failed" not in logged, logged
    for client in (ann_ws, bob_ws, eve_ws):
        client.close()


async def test_refusals_keep_a_members_typing_until_it_expires(server: MessengerServer) -> None:
    """Without a stop, the member's typing still ends by itself (the timer was kept)."""
    api = Api(server.base_url)
    ann, bob, eve = await api.register(), await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    bob_ws = await WsClient.connect(server.base_url, bob.access_token)
    resp = await api.post(f"/api/chats/{chat['id']}/typing", {"is_typing": True},
                          token=ann.access_token)
    assert resp.status == 204, resp.body
    await bob_ws.expect(typing(ann.id, True))
    for _ in range(REFUSALS):
        resp = await api.post(f"/api/chats/{chat['id']}/typing", {"is_typing": True},
                              token=eve.access_token)
        assert resp.status == 404, resp.body
    await bob_ws.expect(typing(ann.id, False), timeout=15)  # TYPING_TTL_SECONDS (6) later
    bob_ws.close()
