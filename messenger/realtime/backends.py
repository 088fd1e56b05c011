"""Which broker and presence manager a node uses: Redis when ``REDIS_URL`` is set, else the
in-process ones (one process; or several nodes of one test process sharing a network).

Both Redis parts share one client (connection pool); the broker opens its own pub/sub
connection from it. ``Backends.close`` closes the client after the broker has closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from config import Settings
from messenger.realtime.broker import Broker, HistorySource, InProcessBroker, InProcessNetwork
from messenger.realtime.presence import InProcessPresence, PresenceManager
from messenger.realtime.redis_broker import RedisBroker
from messenger.realtime.redis_presence import RedisPresence

#: A Redis command that takes longer than this fails (the broker then reconnects).
REDIS_SOCKET_TIMEOUT_SECONDS = 5.0
#: Connections of the command pool (presence); a call waits for a free one (a burst of
#: sessions opening queues here instead of failing with "Too many connections").
REDIS_POOL_CONNECTIONS = 16


@dataclass
class Backends:
    broker: Broker
    presence: PresenceManager
    client: aioredis.Redis | None = None

    async def close(self) -> None:
        """Close what the broker does not (call after ``broker.close``)."""
        if self.client is not None:
            await self.client.aclose(close_connection_pool=True)


def open_backends(settings: Settings, node_id: str, history: HistorySource,
                  network: InProcessNetwork | None = None) -> Backends:
    """The node's broker and presence manager, not yet started (``broker.start`` does)."""
    if settings.redis_url is None:
        return Backends(InProcessBroker(node_id, history, network), InProcessPresence())
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_POOL_CONNECTIONS,
        timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
    )
    client = aioredis.Redis(connection_pool=pool)
    broker = RedisBroker(node_id, history, client, prefix=settings.redis_prefix,
                         reconnect_max=settings.redis_reconnect_max)
    return Backends(broker, RedisPresence(client, prefix=settings.redis_prefix), client)
