"""Two writers into one store, and a client that keeps reconnecting to either of them.

Two nodes (each its own services, store object, actors, broker and HTTP server, as two
processes would have) share one database — one SQLite file, or one mongoeco database — and one
broker network. Five senders on each node send 40 messages each into one chat at once, while a
third client disconnects and reconnects at random moments, alternating nodes, resuming with the
last cursor it was given. Every reader must end with every message exactly once, in ``seq``
order: the client that kept reconnecting, and the sessions that stayed connected on each node.
On mongoeco (whose inserts are slow and slow down as collections grow) the same runs with fewer
senders and messages.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import server_env
from tests.support.api import Account, Api
from tests.support.nodes import InProcessNode, nodes_on_one_store
from tests.support.ws import WsClient

#: (senders per node, messages per sender), per store.
LOADS = {"sqlite": (5, 40), "mongo": (2, 6)}


@dataclass(frozen=True)
class Load:
    env: dict[str, str]
    senders_per_node: int
    per_sender: int

    @property
    def total(self) -> int:
        return 2 * self.senders_per_node * self.per_sender


@pytest.fixture(params=["sqlite", "mongo"])
def load(request: pytest.FixtureRequest, tmp_path: Path) -> Load:
    return Load(server_env(request.param, request, str(tmp_path)), *LOADS[request.param])


def seqs_of(frames: list[dict[str, Any]], chat_id: str) -> list[int]:
    return [f["message"]["seq"] for f in frames
            if f.get("type") in ("new_message", "message_sent")
            and f["message"]["chat_id"] == chat_id]


async def send_all(node: InProcessNode, who: Account, chat_id: str, tag: str,
                   count: int) -> None:
    client = await WsClient.connect(node.base_url, who.access_token)
    try:
        for i in range(count):
            key = f"{tag}-{i}"
            await client.send({"type": "send_message", "chat_id": chat_id, "text": key,
                               "client_msg_id": key})
            answer = await client.expect(
                lambda f, key=key: f.get("type") == "error" or (
                    f.get("type") in ("message_sent", "new_message")
                    and f["message"].get("client_msg_id") == key), timeout=60)
            assert answer["type"] != "error", answer
    finally:
        client.close()


async def read_until(client: WsClient, chat_id: str, seen: list[int], count: int) -> None:
    """Read frames until ``seen`` (this reader's seqs so far) holds ``count`` messages."""
    async with asyncio.timeout(60.0):
        while len(seen) < count:
            seen.extend(seqs_of([await client.next_frame(60.0)], chat_id))


async def roam(nodes: list[InProcessNode], who: Account, chat_id: str, cursor: str,
               done: asyncio.Event, rng: random.Random, total: int) -> tuple[list[int], int]:
    """From ``cursor``: connect, read a little, drop the socket, reconnect to the other node
    with the last cursor, ... until the senders are done; then read the rest. Returns (seqs,
    connections)."""
    seen: list[int] = []
    connections = 0
    while True:
        finished = done.is_set()
        node = nodes[connections % len(nodes)]
        client = await WsClient.connect(node.base_url, who.access_token, last_event_id=cursor)
        connections += 1
        if finished:
            await read_until(client, chat_id, seen, total)
            client.close()
            return seen, connections
        loop = asyncio.get_running_loop()
        stay = loop.time() + rng.uniform(0.0, 0.15)
        while loop.time() < stay:
            try:
                frame = await client.next_frame(max(0.001, stay - loop.time()))
            except TimeoutError:
                break
            seen.extend(seqs_of([frame], chat_id))
        cursor = client.frames[-1]["event_id"]  # every frame carries the session's cursor
        client.close()


async def test_two_writers_and_a_client_that_keeps_reconnecting(load: Load) -> None:
    total = load.total
    async with nodes_on_one_store(load.env, 2) as nodes:
        api = Api(nodes[0].base_url)
        senders = [await api.register() for _ in range(2 * load.senders_per_node)]
        watcher_a, watcher_b, roamer = await api.register(), await api.register(), \
            await api.register()
        chat = await api.create_group(senders[0], *senders[1:], watcher_a, watcher_b, roamer)
        chat_id = chat["id"]
        stayed = [await WsClient.connect(nodes[0].base_url, watcher_a.access_token),
                  await WsClient.connect(nodes[1].base_url, watcher_b.access_token)]

        first = await WsClient.connect(nodes[1].base_url, roamer.access_token)
        start = first.last_event_id  # before any message: the ready frame's cursor
        first.close()

        done = asyncio.Event()
        roaming = asyncio.create_task(
            roam(nodes, roamer, chat_id, start, done, random.Random(9), total))
        await asyncio.gather(*(send_all(nodes[i % 2], who, chat_id, f"s{i}", load.per_sender)
                               for i, who in enumerate(senders)))
        done.set()
        roamer_seqs, connections = await roaming

        assert roamer_seqs == list(range(1, total + 1))
        assert connections >= 4  # it did come and go, on both nodes
        for client in stayed:
            seen: list[int] = []
            await read_until(client, chat_id, seen, total)
            assert seen == list(range(1, total + 1))
            client.close()
