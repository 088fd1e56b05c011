"""Failures inside the server: the database goes away under live sockets, then comes back.

The messenger runs on its own mongoeco server (data in a SQLite file, so it survives a
restart). While the database is down, the chat actor handling a send fails: the sender gets an
``error`` frame, the actor is restarted or stopped by its supervisor, and nothing else breaks —
sockets stay open, other actors keep answering. Once the database is back, a retry of the same
``client_msg_id`` stores the message once and every member receives it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RELAXED_AUTH_LIMITS, TEST_SECRET
from tests.support.api import Api, expect_error
from tests.support.processes import MessengerServer, MongoecoServer
from tests.support.ws import WsClient


@pytest.fixture
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoecoServer]:
    server = MongoecoServer(str(tmp_path_factory.mktemp("db") / "mongoeco.sqlite3"))
    yield server
    server.close()


@pytest.fixture
def messenger(database: MongoecoServer,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[MessengerServer]:
    env = {"ENV": "test", "JWT_SECRET": TEST_SECRET, "BCRYPT_ROUNDS": "4",
           "LOG_LEVEL": "ERROR", "MESSENGER_DATA_DIR": str(tmp_path_factory.mktemp("data")),
           "MONGO_URL": database.url, "MONGO_DB": "failures", "MONGO_TIMEOUT_MS": "500",
           "PRESENCE_GRACE_SECONDS": "60", **RELAXED_AUTH_LIMITS}
    server = MessengerServer(env).start()
    yield server
    server.stop()


@pytest.mark.timeout(120)
async def test_a_database_outage_fails_sends_not_sockets_and_recovers(
    database: MongoecoServer, messenger: MessengerServer
) -> None:
    api = Api(messenger.base_url)
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    ann_ws = await WsClient.connect(messenger.base_url, ann.access_token)
    bob_ws = await WsClient.connect(messenger.base_url, bob.access_token)
    first = {"type": "send_message", "chat_id": chat["id"], "text": "before",
             "client_msg_id": "k1"}
    assert (await ann_ws.request(first, "message_sent"))["message"]["seq"] == 1

    database.close()
    during = {"type": "send_message", "chat_id": chat["id"], "text": "during",
              "client_msg_id": "k2"}
    failed = await ann_ws.request(during, "message_sent", timeout=30)
    assert (failed["type"], failed["code"]) == ("error", "service_unavailable")
    typing = await ann_ws.request({"type": "typing_start", "chat_id": chat["id"],
                                   "ref": "t1"}, "never", timeout=30)
    assert typing["code"] == "service_unavailable"
    rest = await api.post(f"/api/chats/{chat['id']}/messages", {"text": "rest", "client_msg_id":
                          "r1"}, token=ann.access_token)
    expect_error(rest, 503, "service_unavailable")
    # the sockets and the rest of the server are still there
    assert (await ann_ws.request({"type": "ping", "ref": "p1"}, "pong"))["type"] == "pong"
    assert (await api.get("/api/healthz")).status == 200

    database.start()
    again = await ann_ws.request(during, "message_sent", timeout=30)
    assert again["type"] == "message_sent", again
    assert (again["message"]["seq"], again["message"]["text"]) == (2, "during")
    got = await bob_ws.expect(lambda f: f.get("type") == "new_message"
                              and f["message"]["text"] == "during", timeout=30)
    assert got["message"] == again["message"]
    history = await api.get(f"/api/chats/{chat['id']}/messages", token=bob.access_token)
    assert [m["text"] for m in history.json["messages"]] == ["before", "during"]
    ann_ws.close()
    bob_ws.close()
