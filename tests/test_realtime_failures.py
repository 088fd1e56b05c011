"""Failures inside the server: the database goes away under live sockets, then comes back.

The messenger runs on its own mongoeco server (data in a SQLite file, so it survives a
restart). While the database is down, a send fails: the sender gets an ``error`` frame, the chat
actor keeps its state (typing still works: it needs no database), and nothing else breaks —
sockets stay open, other actors keep answering. Once the database is back, a retry of the same
``client_msg_id`` stores the message once and every member receives it. Behind a fault proxy
(``tests/support/mongo_fault_proxy.py``) the connection drops exactly under a send's event
write: the message it stored reaches every member with no retry at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RELAXED_AUTH_LIMITS, TEST_SECRET
from tests.support.api import Account, Api, expect_error
from tests.support.mongo_fault_proxy import MongoFaultProxy
from tests.support.processes import MessengerServer, MongoecoServer
from tests.support.ws import WsClient, in_stream, new_messages


def messenger_env(mongo_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"ENV": "test", "JWT_SECRET": TEST_SECRET, "BCRYPT_ROUNDS": "4",
            "LOG_LEVEL": "ERROR", "MESSENGER_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "MONGO_URL": mongo_url, "MONGO_DB": "failures", "MONGO_TIMEOUT_MS": "500",
            "PRESENCE_GRACE_SECONDS": "60", **RELAXED_AUTH_LIMITS}


@pytest.fixture
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoecoServer]:
    server = MongoecoServer(str(tmp_path_factory.mktemp("db") / "mongoeco.sqlite3"))
    yield server
    server.close()


def serving(mongo_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[MessengerServer]:
    server = MessengerServer(messenger_env(mongo_url, tmp_path_factory)).start()
    yield server
    server.stop()


@pytest.fixture
def messenger(database: MongoecoServer,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[MessengerServer]:
    yield from serving(database.url, tmp_path_factory)


async def two_members_after_one_message(
    messenger: MessengerServer,
) -> tuple[Api, Account, Account, dict[str, Any], WsClient, WsClient]:
    """Ann and Bob in a group, each with a socket, after Ann's first message (seq 1)."""
    api = Api(messenger.base_url)
    ann, bob = await api.register(), await api.register()
    chat = await api.create_group(ann, bob)
    ann_ws = await WsClient.connect(messenger.base_url, ann.access_token)
    bob_ws = await WsClient.connect(messenger.base_url, bob.access_token)
    first = {"type": "send_message", "chat_id": chat["id"], "text": "before",
             "client_msg_id": "k1"}
    assert (await ann_ws.request(first, "message_sent"))["message"]["seq"] == 1
    return api, ann, bob, chat, ann_ws, bob_ws


@pytest.mark.timeout(120)
async def test_a_database_outage_fails_sends_not_sockets_and_recovers(
    database: MongoecoServer, messenger: MessengerServer
) -> None:
    api, ann, bob, chat, ann_ws, bob_ws = await two_members_after_one_message(messenger)

    database.close()
    during = {"type": "send_message", "chat_id": chat["id"], "text": "during",
              "client_msg_id": "k2"}
    failed = await ann_ws.request(during, "message_sent", timeout=30)
    assert (failed["type"], failed["code"]) == ("error", "service_unavailable")
    # the chat's actor keeps its state through the failure: typing needs no database
    await ann_ws.send({"type": "typing_start", "chat_id": chat["id"], "ref": "t1"})
    typing = await bob_ws.expect("typing", timeout=30)
    assert (typing["user_id"], typing["is_typing"]) == (ann.id, True)
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



@pytest.fixture
def proxy(database: MongoecoServer) -> Iterator[MongoFaultProxy]:
    server = MongoFaultProxy(database.port)
    yield server
    server.close()


@pytest.fixture
def messenger_behind_proxy(proxy: MongoFaultProxy,
                           tmp_path_factory: pytest.TempPathFactory) -> Iterator[MessengerServer]:
    yield from serving(proxy.url, tmp_path_factory)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["refused", "answer_lost"])
async def test_a_message_whose_event_write_failed_reaches_every_member_without_a_retry(
    fault: str, proxy: MongoFaultProxy, messenger_behind_proxy: MessengerServer
) -> None:
    """The connection drops under the write of a send's event, after its message was stored —
    before the event is written (``refused``), or after its chat-log entry is written and
    before its copies are (``answer_lost``: the writer never hears it was written): the sender
    gets ``service_unavailable``. No request follows, yet once writes get through again every
    member session receives the message, once, in ``seq`` order — the chat actor writes (or
    completes) the event itself — and the sender's retry stores nothing twice."""
    api, _, bob, chat, ann_ws, bob_ws = await two_members_after_one_message(
        messenger_behind_proxy)

    if fault == "refused":  # the events' inserts; messages still get stored
        proxy.refuse_inserts_into("stream_entries")
    else:
        proxy.lose_answers_to_inserts_into("stream_entries")
    unsaid = {"type": "send_message", "chat_id": chat["id"], "text": "stored, unsaid",
              "client_msg_id": "k2"}
    failed = await ann_ws.request(unsaid, "message_sent", timeout=30)
    assert (failed["type"], failed["code"]) == ("error", "service_unavailable")
    history = await api.get(f"/api/chats/{chat['id']}/messages", token=bob.access_token)
    assert [m["text"] for m in history.json["messages"]] == ["before", "stored, unsaid"]
    assert proxy.cut >= 1

    proxy.allow_all()
    got = await bob_ws.collect(new_messages(chat["id"]), 2, timeout=30)
    assert [(f["message"]["seq"], f["message"]["text"]) for f in got] == [
        (1, "before"), (2, "stored, unsaid")]
    while len([f for f in in_stream(ann_ws.frames) if new_messages(chat["id"])(f)]) < 2:
        await ann_ws.next_frame(timeout=30)
    mine = [f for f in in_stream(ann_ws.frames) if new_messages(chat["id"])(f)]
    assert [f["message"]["seq"] for f in mine] == [1, 2]
    again = await ann_ws.request(unsaid, "message_sent")
    assert (again["type"], again["message"]["seq"]) == ("message_sent", 2)
    history = await api.get(f"/api/chats/{chat['id']}/messages", token=bob.access_token)
    assert len(history.json["messages"]) == 2
    ann_ws.close()
    bob_ws.close()
