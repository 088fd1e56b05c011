"""A client that stops reading is cut off (and can resume) while the others keep receiving."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.conftest import server_env
from tests.support.api import Api
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient, new_messages

MESSAGES = 600
TEXT = "x" * 3500


@pytest.fixture(scope="module")
def small_buffer_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    tmp_dir = str(tmp_path_factory.mktemp("backpressure"))
    env = {**server_env("sqlite", request, tmp_dir), "WS_SEND_BUFFER_BYTES": "65536"}
    proc = MessengerServer(env).start()
    yield proc
    proc.stop()


def open_raw_socket(port: int, token: str) -> socket.socket:
    """A WebSocket handshake by hand on a socket with a tiny receive buffer, then no reading."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def complete_frames(data: bytes) -> list[dict[str, Any]]:
    """Decode the whole server text frames in ``data`` (a cut-off last frame is ignored)."""
    frames, at = [], 0
    while at + 2 <= len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        header = 2
        if length == 126:
            length, header = int.from_bytes(data[at + 2:at + 4]), 4
        elif length == 127:
            length, header = int.from_bytes(data[at + 2:at + 10]), 10
        if at + header + length > len(data):
            break
        if opcode == 0x1:
            frames.append(orjson.loads(data[at + header:at + header + length]))
        at += header + length
    return frames


@pytest.mark.timeout(180)
async def test_a_reader_that_stops_is_cut_off_and_resumes_the_rest(
    small_buffer_server: MessengerServer,
) -> None:
    api = Api(small_buffer_server.base_url)
    ann, bob, cat = await api.register(), await api.register(), await api.register()
    chat = await api.create_group(ann, bob, cat)
    fast = await WsClient.connect(small_buffer_server.base_url, cat.access_token)
    slow = open_raw_socket(small_buffer_server.port, bob.access_token)

    reading = asyncio.ensure_future(  # the fast client reads all along
        fast.collect(new_messages(chat["id"]), MESSAGES, timeout=120))
    sent = []
    for i in range(MESSAGES):
        sent.append(await api.send_text(ann, chat["id"], f"{i} {TEXT}"))
    got = await reading
    assert [f["message"]["id"] for f in got] == [m["id"] for m in sent]

    data = await asyncio.get_running_loop().run_in_executor(None, read_until_closed, slow)
    slow.close()
    frames = complete_frames(data)
    delivered = [f for f in frames if f.get("type") == "new_message"]
    assert frames[0]["type"] == "ready"
    assert 0 < len(delivered) < MESSAGES  # the server cut it off part way
    assert [f["message"]["id"] for f in delivered] == [m["id"] for m in sent[:len(delivered)]]

    resumed = await WsClient.connect(small_buffer_server.base_url, bob.access_token,
                                     last_event_id=delivered[-1]["event_id"])
    rest = await resumed.collect(new_messages(chat["id"]), MESSAGES - len(delivered), timeout=60)
    assert [f["message"]["id"] for f in rest] == [m["id"] for m in sent[len(delivered):]]
    resumed.close()
    fast.close()
