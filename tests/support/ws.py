"""A WebSocket test client for the messenger's ``/ws`` (Tornado's client, real sockets)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import orjson
from tornado.websocket import WebSocketClientConnection, websocket_connect

Predicate = Callable[[dict[str, Any]], bool]


class WsClient:
    """One connection: every frame received is kept in ``frames``, in order."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []
        self._seen = 0
        self.closed = False

    @classmethod
    async def connect(cls, base_url: str, token: str, *, last_event_id: str | None = None,
                      headers: dict[str, str] | None = None) -> WsClient:
        url = base_url.replace("http://", "ws://", 1) + f"/ws?token={token}"
        if last_event_id is not None:
            url += f"&last_event_id={last_event_id}"
        from tornado.httpclient import HTTPRequest

        conn = await websocket_connect(HTTPRequest(url, headers=headers or {}),
                                       max_message_size=16 * 1024 * 1024)
        client = cls(conn)
        ready = await client.next_frame()
        assert ready["type"] == "ready", ready
        return client

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        data = frame if isinstance(frame, str | bytes) else orjson.dumps(frame).decode()
        await self.conn.write_message(data, binary=isinstance(data, bytes))

    async def next_frame(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame not yet returned by ``next_frame``/``expect``."""
        while self._seen >= len(self.frames):
            message = await asyncio.wait_for(self.conn.read_message(), timeout)
            if message is None:
                self.closed = True
                raise ConnectionError(f"socket closed ({self.conn.close_code} "
                                      f"{self.conn.close_reason})")
            self.frames.append(orjson.loads(message))
        frame = self.frames[self._seen]
        self._seen += 1
        return frame

    async def expect(self, predicate: Predicate | str, timeout: float = 10.0) -> dict[str, Any]:
        """Skip frames until one matches (a type name or a predicate); fail after timeout."""
        match = (lambda f: f.get("type") == predicate) if isinstance(predicate, str) else predicate
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no frame matching {predicate!r}; got {self.frames[-5:]}")
            frame = await self.next_frame(remaining)
            if match(frame):
                return frame

    async def collect(self, predicate: Predicate, count: int,
                      timeout: float = 30.0) -> list[dict[str, Any]]:
        """The next ``count`` frames matching ``predicate`` (others are skipped)."""
        return [await self.expect(predicate, timeout) for _ in range(count)]

    async def request(self, frame: dict[str, Any], kind: str,
                      timeout: float = 10.0) -> dict[str, Any]:
        """Send a frame and wait for the answer of ``kind`` (or an error) with its ref."""
        ref = frame.get("client_msg_id") or frame.get("ref")
        await self.send(frame)
        return await self.expect(
            lambda f: f.get("type") in (kind, "error") and (
                f.get("ref") == ref or f.get("client_msg_id") == ref), timeout)

    @property
    def last_event_id(self) -> str:
        """The cursor of the last frame received (every frame carries the session's cursor)."""
        return self.frames[-1]["event_id"]

    def close(self) -> None:
        self.conn.close()

    async def closed_by_server(self, timeout: float = 10.0) -> tuple[int | None, str | None]:
        """Read until the server closes; returns (code, reason)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            message = await asyncio.wait_for(self.conn.read_message(), max(remaining, 0.01))
            if message is None:
                self.closed = True
                return self.conn.close_code, self.conn.close_reason
            self.frames.append(orjson.loads(message))


def new_messages(chat_id: str | None = None) -> Predicate:
    def match(frame: dict[str, Any]) -> bool:
        return frame.get("type") in ("new_message", "message_sent") and (
            chat_id is None or frame["message"]["chat_id"] == chat_id)
    return match


def in_stream(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The frames of ``frames`` that are stream events: each carries a cursor past the one
    before it. A frame outside the stream (``ready``, a direct ``message_sent``, ``pong``,
    ...) carries the current cursor again (API_CONTRACT.md §8)."""
    events = []
    for before, frame in itertools.pairwise(frames):  # the first frame is ready
        if frame["event_id"] != before["event_id"]:
            events.append(frame)
    return events
