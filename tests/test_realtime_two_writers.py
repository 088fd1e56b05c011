"""Two writers into one store, and a client that keeps reconnecting to either of them.

Two nodes (each its own services, store object, actors, broker and HTTP server, as two
processes would have) share one database — one SQLite file, or one mongoeco database — and one
broker network. Five senders on each node send 40 messages each into one chat at once, while a
third client disconnects and reconnects at random moments, to a random node, resuming with the
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

import pytest

from tests.conftest import server_env
from tests.support.api import Api
from tests.support.conversation import read_until, roam, send_all
from tests.support.nodes import nodes_on_one_store
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
            roam([n.base_url for n in nodes], roamer, chat_id, start, done, random.Random(9),
                 total))
        await asyncio.gather(*(send_all(nodes[i % 2].base_url, who, chat_id, f"s{i}",
                                        load.per_sender) for i, who in enumerate(senders)))
        done.set()
        roamer_seqs, used = await roaming

        assert roamer_seqs == list(range(1, total + 1))
        assert used == {0, 1}  # it did come and go, on both nodes
        for client in stayed:
            seen: list[int] = []
            await read_until(client, chat_id, seen, total)
            assert seen == list(range(1, total + 1))
            client.close()
