"""The same conversation through a real nginx in front of two nodes (the config scripts/cluster
renders: round robin, WebSocket upgrade, no sticky sessions): REST and WebSocket land on both
nodes, messages cross between them, and a client reconnecting through nginx — to whichever node
it is given — resumes with its cursor and misses nothing."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import server_env
from tests.support.api import Api
from tests.support.cluster import running_cluster
from tests.support.nginx import Nginx, nginx_or_skip
from tests.support.ws import WsClient, new_messages

pytestmark = pytest.mark.timeout(120)


def upstreams_of(access_log: Path) -> dict[str, set[str]]:
    """Which nodes served ``/ws`` and ``/api`` requests (the log names ``$upstream_addr``)."""
    served: dict[str, set[str]] = defaultdict(set)
    for line in access_log.read_text().splitlines():
        request, _, rest = line.partition('"')[2].partition('"')
        path = request.split(" ")[1] if " " in request else ""
        served["/ws" if path.startswith("/ws") else "/api"].add(rest.split()[-1])
    return served


async def test_a_conversation_through_nginx_in_front_of_two_nodes(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    nginx_or_skip()
    env = {**server_env("sqlite", request, str(tmp_path / "data")),
           "TRUSTED_PROXIES": "127.0.0.1"}
    with running_cluster(env, 2) as cluster:
        front = Nginx([url.removeprefix("http://") for url in cluster.urls], tmp_path / "nginx")
        try:
            api = Api(front.base_url)
            alice, bob = await api.register(), await api.register()
            chat_id = (await api.create_group(alice, bob))["id"]

            # no stickiness: successive connections through nginx reach both nodes
            clients = [await WsClient.connect(front.base_url, bob.access_token)
                       for _ in range(4)]
            sent = await api.send_text(alice, chat_id, "through nginx", "n1")
            for client in clients:
                got = await client.expect(new_messages(chat_id))
                assert got["message"]["seq"] == sent["seq"]
            access_log = tmp_path / "nginx" / "access.log"
            nodes = {url.removeprefix("http://") for url in cluster.urls}
            assert upstreams_of(access_log)["/api"] == nodes  # REST on both nodes

            # the client drops, more is sent, it comes back through nginx with its cursor
            cursor = clients[0].last_event_id
            for client in clients:
                client.close()
            # nginx logs a WebSocket when it ends: the four went to both nodes
            async with asyncio.timeout(10):
                while True:  # a file to watch: polled, with a deadline
                    if upstreams_of(access_log)["/ws"] == nodes:
                        break
                    await asyncio.sleep(0.05)
            seqs = [(await api.send_text(alice, chat_id, f"while away {i}", f"w{i}"))["seq"]
                    for i in range(10)]
            again = await WsClient.connect(front.base_url, bob.access_token,
                                           last_event_id=cursor)
            got = [f["message"]["seq"] for f in await again.collect(new_messages(chat_id), 10)]
            assert got == seqs
            reply = await Api(front.base_url).post(f"/api/chats/{chat_id}/messages",
                                                   {"text": "live"}, token=alice.access_token)
            live = await again.expect(new_messages(chat_id))
            assert live["message"]["seq"] == reply.json["seq"]
            again.close()
        finally:
            front.stop()
