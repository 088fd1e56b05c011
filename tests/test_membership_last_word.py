"""The store is the last word on membership (issue: a member removed elsewhere could still send
through a process whose chat actor cached the old member list).

The test removes a member behind the server's back — straight in the store the server uses, the
way another process would — so the server's chat actor still lists them; their next send, over
REST and over WebSocket, must still be refused, and nothing stored.
"""

from __future__ import annotations

from pathlib import Path

from messenger.store import Store
from tests.support.api import Api, expect_error
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient


def open_same_store(server: MessengerServer) -> Store:
    if server.backend == "sqlite":
        from messenger.store.sqlite import SQLiteStore

        return SQLiteStore(Path(server.env["MESSENGER_DATA_DIR"]) / "messenger.sqlite3")
    from messenger.store.mongo import MongoStore

    return MongoStore(server.env["MONGO_URL"], server.env["MONGO_DB"], write_concern="majority",
                      timeout_ms=3000)


async def test_a_member_removed_elsewhere_cannot_send_through_a_stale_cache(
    server: MessengerServer,
) -> None:
    api = Api(server.base_url)
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    await api.send_text(bob, chat["id"], "while a member")  # the chat actor caches the members
    bob_ws = await WsClient.connect(server.base_url, bob.access_token)

    store = open_same_store(server)
    try:
        await store.remove_member(chat["id"], bob.id)  # not through this server: its cache is stale
    finally:
        await store.close()

    resp = await api.post(f"/api/chats/{chat['id']}/messages", {"text": "after removal"},
                          token=bob.access_token)
    expect_error(resp, 404, "chat_not_found")
    await bob_ws.send({"type": "send_message", "chat_id": chat["id"], "text": "ws after removal",
                       "client_msg_id": "late-1", "ref": "r1"})
    error = await bob_ws.expect(lambda f: f["type"] == "error")
    assert error["code"] == "chat_not_found"
    bob_ws.close()

    sent = await api.send_text(ann, chat["id"], "still here")
    assert sent["seq"] == 2  # the refused sends took no seq
    history = await api.get(f"/api/chats/{chat['id']}/messages", token=ann.access_token)
    assert [m["text"] for m in history.json["messages"]] == ["while a member", "still here"]
