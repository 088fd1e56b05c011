"""Three messenger processes on one store and one Redis: one messenger, whichever node a user
is on (issue: scale-out). Real processes, a real valkey/redis server, real sockets.

* users on different nodes exchange messages, typing, read state and presence (SQLite, MongoDB);
* 3 nodes x 10 senders x 30 messages into one chat (fanned out, and streamed): every session
  that stayed on any node, and a client that keeps reconnecting to random nodes with its cursor,
  ends with all 900 exactly once in ``seq`` order;
* a member who left through node 1 can neither send nor receive on node 2;
* a node killed with SIGKILL has its users offline for the others within the bound, and its
  restart leaves no ghost;
* Redis restarted mid-conversation: no message lost for any session; while it is down
  ``/api/readyz`` is 503 naming it and local sessions keep working.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from messenger.realtime.redis_presence import RedisPresence
from tests.conftest import server_env
from tests.support.api import Account, Api
from tests.support.cluster import GRACE, NODE_TTL, running_cluster, wait_until_ready
from tests.support.conversation import read_until, roam, send_all, seqs_of
from tests.support.ws import WsClient, new_messages

pytestmark = pytest.mark.timeout(180)


def presence_of(user: Account, status: str) -> Any:
    return lambda f: (f.get("type") == "presence" and f.get("user_id") == user.id
                      and f.get("status") == status)


@pytest.fixture(params=["sqlite", "mongo"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    return server_env(request.param, request, str(tmp_path))


@pytest.fixture
def sqlite_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    return server_env("sqlite", request, str(tmp_path))


async def test_users_on_different_nodes_exchange_messages_typing_read_and_presence(
        env: dict[str, str]) -> None:
    with running_cluster(env, 3) as cluster:
        api = Api(cluster.url(0))
        alice, bob, carol = [await api.register() for _ in range(3)]
        chat = await api.create_group(alice, bob, carol)
        chat_id = chat["id"]
        b = await WsClient.connect(cluster.url(1), bob.access_token)
        c = await WsClient.connect(cluster.url(2), carol.access_token)
        a = await WsClient.connect(cluster.url(0), alice.access_token)
        await b.expect(presence_of(alice, "online"))
        await c.expect(presence_of(alice, "online"))

        sent = await a.request({"type": "send_message", "chat_id": chat_id, "text": "hi",
                                "client_msg_id": "m1"}, "message_sent")
        seq = sent["message"]["seq"]
        for other in (b, c):
            got = await other.expect(new_messages(chat_id))
            assert (got["message"]["seq"], got["message"]["text"]) == (seq, "hi")

        await b.send({"type": "typing_start", "chat_id": chat_id})
        typing = await a.expect("typing")
        assert (typing["user_id"], typing["is_typing"]) == (bob.id, True)

        await c.send({"type": "mark_read", "chat_id": chat_id, "seq": seq})
        read = await a.expect(lambda f: f.get("type") == "read" and f.get("user_id") == carol.id)
        assert read["seq"] == seq

        a.close()  # alice's only session: offline after the grace, seen on the other nodes
        await b.expect(presence_of(alice, "offline"), timeout=GRACE + 10)
        await c.expect(presence_of(alice, "offline"), timeout=GRACE + 10)
        b.close()
        c.close()


@pytest.mark.parametrize("shape", ["fanned_out", "streamed"])
async def test_three_nodes_ten_senders_thirty_messages_each(
        sqlite_env: dict[str, str], shape: str) -> None:
    senders_per_node, per_sender = 10, 30
    total = 3 * senders_per_node * per_sender
    env = dict(sqlite_env)
    if shape == "streamed":  # the chat is above the fan-out size: one stream of its own
        env["STREAM_FANOUT_MAX_MEMBERS"] = "2"
    with running_cluster(env, 3) as cluster:
        api = Api(cluster.url(0))
        senders = [await api.register() for _ in range(3 * senders_per_node)]
        watchers = [await api.register() for _ in range(3)]
        roamer = await api.register()
        chat = await api.create_group(senders[0], *senders[1:], *watchers, roamer)
        chat_id = chat["id"]
        stayed = [await WsClient.connect(cluster.url(i), w.access_token)
                  for i, w in enumerate(watchers)]
        first = await WsClient.connect(cluster.url(2), roamer.access_token)
        start = first.last_event_id
        first.close()

        done = asyncio.Event()
        roaming = asyncio.create_task(
            roam(cluster.urls, roamer, chat_id, start, done, random.Random(10), total))
        await asyncio.gather(*(send_all(cluster.url(i), who, chat_id, f"s{i}", per_sender)
                               for i, who in enumerate(senders)))
        done.set()
        roamer_seqs, used = await roaming

        assert roamer_seqs == list(range(1, total + 1))
        assert used == {0, 1, 2}  # it did come and go, on every node
        for client in stayed:
            seen: list[int] = []
            await read_until(client, chat_id, seen, total)
            assert seen == list(range(1, total + 1))
            client.close()


async def test_a_member_who_left_through_one_node_cannot_send_or_receive_on_another(
        sqlite_env: dict[str, str]) -> None:
    with running_cluster(sqlite_env, 2) as cluster:
        api = Api(cluster.url(0))
        owner, leaver, other = [await api.register() for _ in range(3)]
        chat_id = (await api.create_group(owner, leaver, other))["id"]
        # node 1 has just served the leaver: its chat actor caches the members
        on_1 = await WsClient.connect(cluster.url(1), leaver.access_token)
        await on_1.request({"type": "send_message", "chat_id": chat_id, "text": "before",
                            "client_msg_id": "b"}, "message_sent")
        watcher = await WsClient.connect(cluster.url(1), other.access_token)

        resp = await Api(cluster.url(0)).request(
            "DELETE", f"/api/chats/{chat_id}/members/{leaver.id}", token=leaver.access_token)
        assert resp.status in (200, 204), resp.body
        await on_1.expect(lambda f: f.get("type") == "member_removed")

        refused = await on_1.request({"type": "send_message", "chat_id": chat_id,
                                      "text": "after", "client_msg_id": "a"}, "message_sent")
        assert refused["type"] == "error", refused
        rest = await Api(cluster.url(1)).post(f"/api/chats/{chat_id}/messages", {"text": "x"},
                                              token=leaver.access_token)
        assert rest.status in (403, 404), rest.body

        sent = await api.send_text(owner, chat_id, "after they left")
        got = await watcher.expect(new_messages(chat_id))
        assert got["message"]["seq"] == sent["seq"]
        # the leaver's session on node 1 got nothing of the chat after its removal
        await on_1.send({"type": "ping", "ref": "p"})
        await on_1.expect(lambda f: f.get("type") == "pong")
        assert sent["seq"] not in seqs_of(on_1.frames, chat_id)
        on_1.close()
        watcher.close()


async def test_a_killed_nodes_users_go_offline_within_the_bound_and_leave_no_ghost(
        sqlite_env: dict[str, str]) -> None:
    with running_cluster(sqlite_env, 2) as cluster:
        api = Api(cluster.url(0))
        alice, bob = await api.register(), await api.register()
        await api.create_group(alice, bob)
        b = await WsClient.connect(cluster.url(1), bob.access_token)
        a = await WsClient.connect(cluster.url(0), alice.access_token)
        await b.expect(presence_of(alice, "online"))

        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        cluster.kill(0)
        # entries live NODE_TTL after the last heartbeat; survivors sweep every NODE_TTL / 3
        await b.expect(presence_of(alice, "offline"), timeout=NODE_TTL * 4 / 3 + 5)
        assert loop.time() - killed_at <= NODE_TTL * 4 / 3 + 2.0  # the bound, plus delivery
        a.close()

        cluster.restart(0)
        await wait_until_ready(cluster.url(0), 200)
        client = aioredis.from_url(cluster.redis.url)
        try:
            presence = RedisPresence(client, prefix="messenger")
            assert await presence.online([alice.id, bob.id]) == {bob.id}  # no ghost of alice
        finally:
            await client.aclose()
        b.close()


async def test_redis_restarted_mid_conversation_loses_nothing(
        sqlite_env: dict[str, str]) -> None:
    with running_cluster(sqlite_env, 2) as cluster:
        api = Api(cluster.url(0))
        sender_0, sender_1, reader_0, reader_1 = [await api.register() for _ in range(4)]
        chat_id = (await api.create_group(sender_0, sender_1, reader_0, reader_1))["id"]
        readers = [await WsClient.connect(cluster.url(0), reader_0.access_token),
                   await WsClient.connect(cluster.url(1), reader_1.access_token)]
        senders = [await WsClient.connect(cluster.url(0), sender_0.access_token),
                   await WsClient.connect(cluster.url(1), sender_1.access_token)]
        seqs: list[int] = []

        async def send(index: int, key: str) -> None:
            answer = await senders[index].request(
                {"type": "send_message", "chat_id": chat_id, "text": key, "client_msg_id": key},
                "message_sent")
            assert answer["type"] == "message_sent", answer
            seqs.append(answer["message"]["seq"])

        for i in range(5):
            await send(i % 2, f"before-{i}")
        cluster.redis.stop()
        for url in cluster.urls:
            body = orjson.loads(await wait_until_ready(url, 503))
            assert body["checks"]["redis"] == "unavailable", body
        for i in range(5):  # stored; each node's own sessions still get them live
            await send(i % 2, f"during-{i}")
        local = await readers[0].expect(
            lambda f: new_messages(chat_id)(f) and f["message"]["text"] == "during-4")
        assert local["message"]["seq"] == max(seqs)
        cluster.redis.start()
        for url in cluster.urls:
            await wait_until_ready(url, 200)
        for i in range(5):
            await send(i % 2, f"after-{i}")

        assert sorted(seqs) == list(range(1, 16))
        for reader in readers:
            seen = seqs_of(reader.frames, chat_id)
            await read_until(reader, chat_id, seen, 15)
            assert seen == list(range(1, 16))
        for client in (*readers, *senders):
            client.close()


async def test_sigterm_under_load_clients_get_1001_reconnect_elsewhere_and_miss_nothing(
        sqlite_env: dict[str, str]) -> None:
    per_sender = 100
    with running_cluster(sqlite_env, 3) as cluster:
        api = Api(cluster.url(0))
        senders = [await api.register() for _ in range(4)]
        readers = [await api.register() for _ in range(4)]
        chat_id = (await api.create_group(senders[0], *senders[1:], *readers))["id"]
        on_doomed = [await WsClient.connect(cluster.url(2), r.access_token) for r in readers]

        sending = asyncio.gather(*(send_all(cluster.url(i % 2), who, chat_id, f"t{i}",
                                            per_sender) for i, who in enumerate(senders)))
        total = len(senders) * per_sender
        await on_doomed[0].expect(new_messages(chat_id), timeout=30)  # the load is on
        cluster.terminate(2)
        seen: dict[str, list[int]] = {}
        moved = []
        for i, (who, client) in enumerate(zip(readers, on_doomed, strict=True)):
            code, _ = await client.closed_by_server(timeout=15)
            assert code == 1001
            seen[who.id] = seqs_of(client.frames, chat_id)
            again = await WsClient.connect(cluster.url(i % 2), who.access_token,
                                           last_event_id=client.last_event_id)
            moved.append((who, again))
        assert not sending.done()  # the node went away mid-conversation
        assert all(len(s) < total for s in seen.values())
        await sending
        assert cluster.nodes[2].proc is not None and cluster.nodes[2].proc.wait(15) == 0
        for who, client in moved:
            await read_until(client, chat_id, seen[who.id], total)
            assert seen[who.id] == list(range(1, total + 1))
            client.close()
