"""One chat under load, as the multi-writer tests drive it over real sockets: senders that each
send their messages one at a time, readers that collect seqs, and a client that keeps
reconnecting with its last cursor to a random one of several nodes."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tests.support.api import Account
from tests.support.ws import WsClient


def seqs_of(frames: list[dict[str, Any]], chat_id: str) -> list[int]:
    """The message seqs of ``chat_id`` in ``frames``, as they arrived."""
    return [f["message"]["seq"] for f in frames
            if f.get("type") in ("new_message", "message_sent")
            and f["message"]["chat_id"] == chat_id]


async def read_until(client: WsClient, chat_id: str, seen: list[int], count: int) -> None:
    """Read frames until ``seen`` (this reader's seqs so far) holds ``count`` messages."""
    async with asyncio.timeout(90.0):
        while len(seen) < count:
            seen.extend(seqs_of([await client.next_frame(90.0)], chat_id))


async def send_all(base_url: str, who: Account, chat_id: str, tag: str, count: int) -> None:
    """``count`` messages over one WebSocket, each acknowledged before the next."""
    client = await WsClient.connect(base_url, who.access_token)
    try:
        for i in range(count):
            key = f"{tag}-{i}"
            answer = await client.request({"type": "send_message", "chat_id": chat_id,
                                           "text": key, "client_msg_id": key},
                                          "message_sent", timeout=60)
            assert answer["type"] == "message_sent", answer
    finally:
        client.close()


async def roam(urls: list[str], who: Account, chat_id: str, cursor: str, done: asyncio.Event,
               rng: random.Random, total: int) -> tuple[list[int], set[int]]:
    """From ``cursor``: connect to a random node, read a little, drop the socket, reconnect
    with the last cursor, … until ``done``; then read the rest. Returns (seqs, nodes used)."""
    seen: list[int] = []
    used: set[int] = set()
    while True:
        finished = done.is_set()
        index = rng.randrange(len(urls))
        used.add(index)
        client = await WsClient.connect(urls[index], who.access_token, last_event_id=cursor)
        if finished:
            await read_until(client, chat_id, seen, total)
            client.close()
            return seen, used
        loop = asyncio.get_running_loop()
        stay = loop.time() + rng.uniform(0.0, 0.2)
        while loop.time() < stay:
            try:
                frame = await client.next_frame(max(0.001, stay - loop.time()))
            except TimeoutError:
                break
            seen.extend(seqs_of([frame], chat_id))
        cursor = client.last_event_id  # every frame carries the session's cursor
        client.close()
