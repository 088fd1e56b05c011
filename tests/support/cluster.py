"""Several messenger processes on one store and one real Redis-protocol server: a cluster, as
``make cluster`` runs it, started and stopped by the tests (real processes, real sockets).

Each node is ``python -m messenger`` with ``REDIS_URL`` set; they share the store named by the
environment (one SQLite file under ``MESSENGER_DATA_DIR``, or one mongoeco database). Presence
timings are short so that a killed node's users go offline within a test's patience.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping

from tests.support.processes import MessengerServer
from tests.support.redis_server import RedisServer

#: Presence timings of test clusters (seconds).
NODE_TTL = 1.5
GRACE = 0.3


class Cluster:
    def __init__(self, env: Mapping[str, str], count: int, redis: RedisServer) -> None:
        self.redis = redis
        self.env = {
            **env,
            "REDIS_URL": redis.url,
            "PRESENCE_NODE_TTL_SECONDS": str(NODE_TTL),
            "PRESENCE_GRACE_SECONDS": str(GRACE),
            "REDIS_RECONNECT_MAX_SECONDS": "0.5",
            "SHUTDOWN_DRAIN_SECONDS": "0.2",
            "WS_MESSAGES_PER_SECOND": "10000",  # senders here go as fast as acks come
            "WS_BURST": "100000",
        }
        self.nodes = [MessengerServer(self.env) for _ in range(count)]

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        return self

    def url(self, index: int) -> str:
        return self.nodes[index % len(self.nodes)].base_url

    @property
    def urls(self) -> list[str]:
        return [node.base_url for node in self.nodes]

    def kill(self, index: int) -> None:
        """SIGKILL: the node stops without a word (no close frames, no presence cleanup)."""
        proc = self.nodes[index].proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def terminate(self, index: int) -> None:
        """SIGTERM: the node drains (close frames 1001) and exits."""
        proc = self.nodes[index].proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)

    def restart(self, index: int) -> None:
        """Start a stopped node again on its port (a new process: a new node id)."""
        self.nodes[index].start()

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()


def readyz(base_url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base_url + "/api/readyz", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def wait_until_ready(base_url: str, status: int, timeout: float = 20.0) -> bytes:
    """Poll readiness until it answers ``status``; the last body."""
    deadline = time.monotonic() + timeout
    while True:
        code, body = await asyncio.to_thread(readyz, base_url)
        if code == status:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url}/api/readyz stayed {code}: {body[:200]!r}")
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def running_cluster(env: Mapping[str, str], count: int) -> Iterator[Cluster]:
    """A started cluster of ``count`` nodes on a Redis server of its own."""
    redis = RedisServer()
    cluster = Cluster(env, count, redis)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        redis.close()
