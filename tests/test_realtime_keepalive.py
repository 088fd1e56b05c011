"""Keepalive: the server pings; a client that answers stays, one that is silent is closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.conftest import server_env
from tests.support.api import Api
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient
from tests.test_api_token_claims import claims, sign
from tests.test_realtime_backpressure import open_raw_socket, read_until_closed

KEEPALIVE_ENV = {"WS_PING_INTERVAL_SECONDS": "0.3", "WS_PING_TIMEOUT_SECONDS": "1",
                 "WS_IDLE_TIMEOUT_SECONDS": "1.5"}


@pytest.fixture(scope="module")
def keepalive_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    tmp_dir = str(tmp_path_factory.mktemp("keepalive"))
    proc = MessengerServer({**server_env("sqlite", request, tmp_dir), **KEEPALIVE_ENV}).start()
    yield proc
    proc.stop()


async def test_a_silent_client_is_closed_and_an_answering_one_stays(
    keepalive_server: MessengerServer,
) -> None:
    api = Api(keepalive_server.base_url)
    ann, bob = await api.register(), await api.register()
    answering = await WsClient.connect(keepalive_server.base_url, ann.access_token)
    reading = asyncio.ensure_future(answering.next_frame(timeout=60))  # keeps answering pings
    opened = time.monotonic()
    silent = open_raw_socket(keepalive_server.port, bob.access_token)

    data = await asyncio.get_running_loop().run_in_executor(None, read_until_closed, silent)
    silent.close()
    assert b"\x89" in data  # it was pinged (opcode 0x9) before being closed
    # the property is about time itself: the answering client must outlive the idle timeout
    await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - opened)))

    # the client that answers pings is still connected and served
    assert not reading.done()
    chat = await api.create_group(bob, ann)
    created = await reading
    assert created["type"] == "chat_created" and created["chat"]["id"] == chat["id"]
    answering.close()


async def test_a_socket_closes_with_1008_within_a_second_after_its_token_expires(
    keepalive_server: MessengerServer,
) -> None:
    """A token that lives 2 s (shorter than the TTL is valid): the socket, which answers pings
    and so is never idle, is closed with 1008 at its exp plus at most the sweep's second."""
    api = Api(keepalive_server.base_url)
    ann = await api.register()
    now = int(time.time())
    token = sign(claims(ann.id, iat=now, exp=now + 2))
    client = await WsClient.connect(keepalive_server.base_url, token)
    with pytest.raises(ConnectionError, match="1008 token expired"):
        await client.next_frame(timeout=10)
    closed_at = time.time()
    assert now + 2 <= closed_at <= now + 2 + 1.0 + 1.0  # exp, then the sweep (+ a loaded second)
