"""Several messenger nodes in the test's own process: each its own services (store object,
hub, actors, broker) and its own HTTP server on a loopback port, all on one database and one
``InProcessNetwork`` — what several processes sharing a store and a broker are, minus the
process boundary. Clients reach them over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import tornado.netutil

from config import load_settings
from messenger.app import MessengerApp, build_server
from messenger.http_server import LimitedHTTPServer
from messenger.realtime.broker import InProcessNetwork
from messenger.services import Services


@dataclass
class InProcessNode:
    services: Services
    server: LimitedHTTPServer
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def nodes_on_one_store(env: dict[str, str], count: int) -> AsyncIterator[
        list[InProcessNode]]:
    """``count`` nodes sharing the store named by ``env`` and one broker network."""
    network = InProcessNetwork()
    started: list[InProcessNode] = []
    try:
        for _ in range(count):
            services = Services.build(load_settings(env), network=network)
            await services.start()
            server = build_server(MessengerApp(services))
            sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
            server.add_sockets(sockets)
            started.append(InProcessNode(services, server, sockets[0].getsockname()[1]))
        yield started
    finally:
        for node in started:
            node.server.stop()
            await node.server.close_all_connections()
            await node.services.close()
