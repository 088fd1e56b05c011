"""Graceful shutdown of a real server process (API_CONTRACT.md §8 *Shutdown*) and readiness.

SIGTERM while WebSockets are open (one of them in the middle of a stream of sends) and a long
poll waits: the poll answers at once (200, its cursor), ``/api/readyz`` turns 503 on a
keep-alive connection opened before, new connections are refused, every WebSocket then gets a
close frame with 1001, and the process exits 0 within its bound. Every WebSocket client that
resumes from its last cursor on a fresh server on the same SQLite file gets exactly the rest of
the chat: what it got before plus what it gets after is every stored message, in order, once.
A second signal cuts the drain short.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from tornado.websocket import WebSocketClosedError

from messenger.app import SHUTDOWN_GRACE_SECONDS
from tests.conftest import RELAXED_AUTH_LIMITS, TEST_SECRET
from tests.support import raw_http
from tests.support.api import Account, Api
from tests.support.processes import MessengerServer
from tests.support.ws import WsClient

#: SHUTDOWN_DRAIN_SECONDS of the servers under test: long enough that what the test does
#: between the signal and the end of the drain (a poll's answer, two local requests) fits in it.
DRAIN = 3.0
#: The longest the process may take from SIGTERM to its exit: the drain, the wait for the
#: sockets to close, and stopping the services.
EXIT_BOUND = DRAIN + 2 * SHUTDOWN_GRACE_SECONDS + 5.0
#: Sends alice keeps in flight (sent, not yet answered) while she streams.
WINDOW = 8


def shutdown_env(data_dir: Path, drain: float = DRAIN) -> dict[str, str]:
    return {
        "ENV": "test", "JWT_SECRET": TEST_SECRET, "BCRYPT_ROUNDS": "4", "LOG_LEVEL": "INFO",
        "MESSENGER_DATA_DIR": str(data_dir), "SQLITE_SYNCHRONOUS": "normal",
        "SHUTDOWN_DRAIN_SECONDS": str(drain),
        # a poll's presence ends with it: a contact sees each poll begin (see below)
        "PRESENCE_GRACE_SECONDS": "0",
        "WS_MESSAGES_PER_SECOND": "10000", "WS_BURST": "100000",
        **RELAXED_AUTH_LIMITS,
    }


class Session:
    """A WebSocket client whose frames a task reads as they come, until the server closes."""

    def __init__(self, name: str, account: Account, client: WsClient) -> None:
        self.name = name
        self.account = account
        self.client = client
        self.frames: list[dict[str, Any]] = []
        self.closed_with: tuple[int | None, str | None] | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, name: str, base_url: str, account: Account) -> Session:
        return cls(name, account, await WsClient.connect(base_url, account.access_token))

    async def _read(self) -> None:
        conn = self.client.conn
        while True:
            message = await conn.read_message()
            if message is None:
                self.closed_with = (conn.close_code, conn.close_reason)
                self._changed.set()
                return
            self.frames.append(orjson.loads(message))
            self._changed.set()

    async def until(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``condition()`` holds (at most ``within`` seconds), re-checked on every
        frame and on the close."""
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def closed(self, within: float) -> tuple[int | None, str | None]:
        await self.until(lambda: self.closed_with is not None, within)
        assert self.closed_with is not None
        return self.closed_with

    @property
    def last_event_id(self) -> str:
        """The cursor of the last frame received (the ``ready`` frame's, if nothing else)."""
        return self.frames[-1]["event_id"] if self.frames else self.client.last_event_id

    def answered(self) -> int:
        """Answers to alice's sends so far (an ack, or an error naming the send)."""
        return sum(1 for f in self.frames if f["type"] == "message_sent"
                   or (f["type"] == "error" and str(f.get("ref", "")).startswith("m")))


def messages(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f["message"] for f in frames if f["type"] in ("new_message", "message_sent")]


def presences(session: Session, user_id: str, status: str) -> int:
    return sum(1 for f in session.frames if f["type"] == "presence"
               and f["user_id"] == user_id and f["status"] == status)


async def poll(api: Api, who: Account, after: str | None, wait: float) -> dict[str, Any]:
    query = f"?timeout={wait}" + ("" if after is None else f"&last_event_id={quote(after)}")
    resp = await api.get("/api/events" + query, token=who.access_token)
    assert resp.status == 200, resp.body
    return resp.json


async def stream_sends(alice: Session, chat_id: str) -> int:
    """Send messages one after another (``WINDOW`` unanswered at most) until the server
    closes the socket; returns how many were sent."""
    sent = 0
    while True:
        await alice.until(lambda sent=sent: alice.closed_with is not None
                          or sent - alice.answered() < WINDOW)
        if alice.closed_with is not None:
            return sent
        frame = {"type": "send_message", "chat_id": chat_id, "text": f"m{sent}",
                 "client_msg_id": f"m{sent}"}
        try:
            await alice.client.send(frame)
        except WebSocketClosedError:
            return sent
        sent += 1


async def history(api: Api, who: Account, chat_id: str) -> list[dict[str, Any]]:
    """Every message of the chat, oldest first."""
    older: list[dict[str, Any]] = []
    query = "?limit=200"
    while True:
        resp = await api.get(f"/api/chats/{chat_id}/messages{query}", token=who.access_token)
        assert resp.status == 200, resp.body
        older[:0] = resp.json["messages"]
        if not resp.json["has_more"]:
            return older
        query = f"?limit=200&before_id={older[0]['id']}"


def send_request(sock: socket.socket, path: str, headers: dict[str, str] | None = None) -> None:
    sock.sendall(raw_http.request_bytes("GET", path, headers=headers))


async def read_answer(sock: socket.socket) -> raw_http.RawResponse:
    """The next answer on ``sock`` (read in a thread: the test's loop keeps running)."""
    responses, _ = await asyncio.to_thread(raw_http.read_responses, sock, 1)
    assert responses, "no answer"
    return responses[0]


async def raw_request(sock: socket.socket, path: str,
                      headers: dict[str, str] | None = None) -> raw_http.RawResponse:
    """One GET on a connection that is open already."""
    send_request(sock, path, headers)
    return await read_answer(sock)


async def exit_code(server: MessengerServer, within: float) -> int:
    assert server.proc is not None
    return await asyncio.to_thread(server.proc.wait, within)


@pytest.mark.timeout(90)
async def test_sigterm_drains_closes_with_1001_and_every_client_resumes_exactly(
        tmp_path: Path) -> None:
    env = shutdown_env(tmp_path)
    server = MessengerServer(env).start()
    api = Api(server.base_url)
    try:
        alice, bob, carol, erin = [await api.register(name=n)
                                   for n in ("Alice", "Bob", "Carol", "Erin")]
        chat = await api.create_group(alice, bob, carol)
        direct = await api.post("/api/chats", {"type": "direct", "member_ids": [erin.id]},
                                token=carol.access_token)
        assert direct.status == 201, direct.body
        for i in range(3):
            await api.send_text(bob, chat["id"], f"before {i}")
        sessions = [await Session.open(name, server.base_url, who) for name, who in
                    (("alice", alice), ("bob", bob), ("bob again", bob), ("carol", carol))]
        sender, carol_ws = sessions[0], sessions[3]

        # Erin long-polls; carol sees each of erin's polls begin (presence online).
        cursor = (await poll(api, erin, None, wait=0))["last_event_id"]
        await carol_ws.until(lambda: presences(carol_ws, erin.id, "offline") == 1)
        waiting = asyncio.ensure_future(poll(api, erin, cursor, wait=60))
        await carol_ws.until(lambda: presences(carol_ws, erin.id, "online") == 2)

        keep_alive = await asyncio.to_thread(raw_http.connect, server.port)
        ready = await raw_request(keep_alive, "/api/readyz")
        assert ready.status == 200
        assert ready.json == {"status": "ok",
                              "checks": {"sqlite": "ok", "in-process": "ok", "node": "ok"}}

        streaming = asyncio.ensure_future(stream_sends(sender, chat["id"]))
        await sender.until(lambda: sender.answered() >= 20)

        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        answered = await asyncio.wait_for(waiting, 10)
        assert answered == {"events": [], "last_event_id": cursor}

        draining = await raw_request(keep_alive, "/api/readyz")
        assert draining.status == 503
        assert draining.json == {
            "status": "unavailable",
            "checks": {"sqlite": "ok", "in-process": "ok", "node": "draining"},
            "error": {"code": "service_unavailable", "message": "this node is shutting down"},
        }
        assert draining.header("connection") == "close"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        # All of that happened during the drain: no WebSocket is closed yet, and alice's
        # stream goes on.
        assert [s.closed_with for s in sessions] == [None] * len(sessions)
        answers = sender.answered()
        await sender.until(lambda: sender.answered() > answers or sender.closed_with is not None)

        for session in sessions:
            assert await session.closed(DRAIN + 10) == (1001, "server shutting down"), session.name
        sent = await asyncio.wait_for(streaming, 10)
        assert not [f for f in sender.frames if f["type"] == "error"]
        assert await exit_code(server, EXIT_BOUND) == 0
        keep_alive.close()
    finally:
        server.stop()

    # A fresh server on the same SQLite file: each client resumes from its last cursor.
    server = MessengerServer(env, port=server.port).start()
    api = Api(server.base_url)
    try:
        stored = (await history(api, carol, chat["id"]))[3:]  # after the sessions opened
        assert len(stored) <= sent
        resumed = [await WsClient.connect(server.base_url, s.account.access_token,
                                          last_event_id=s.last_event_id) for s in sessions]
        marker = await api.send_text(carol, chat["id"], "after the restart")
        for session, client in zip(sessions, resumed, strict=True):
            await client.expect(lambda f: f.get("type") == "new_message"
                                and f["message"]["id"] == marker["id"], timeout=20)
            before = [m["id"] for m in messages(session.frames)]
            after = [m["id"] for m in messages(client.frames)][:-1]  # without the marker
            assert before + after == [m["id"] for m in stored], session.name
            assert not [f for f in client.frames if f["type"] == "resync_required"]
            client.close()
    finally:
        assert server.stop() == 0


@pytest.mark.timeout(60)
async def test_a_second_signal_skips_the_drain(tmp_path: Path) -> None:
    long_drain = 30.0
    server = MessengerServer(shutdown_env(tmp_path, drain=long_drain)).start()
    try:
        api = Api(server.base_url)
        ann = await api.register()
        session = await Session.open("ann", server.base_url, ann)
        cursor = (await poll(api, ann, None, wait=0))["last_event_id"]
        for_poll, for_ready, for_ws = [await asyncio.to_thread(raw_http.connect, server.port)
                                       for _ in range(3)]
        # A long poll sent before the signal: it is answered only once the drain has begun
        # (whether the server read it before or after the signal).
        send_request(for_poll, f"/api/events?timeout=60&last_event_id={quote(cursor)}",
                     {"Authorization": f"Bearer {ann.access_token}"})
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        answered = await asyncio.wait_for(read_answer(for_poll), 10)
        assert answered.status == 200 and answered.json["last_event_id"] == cursor

        ready = await raw_request(for_ready, "/api/readyz")
        assert ready.status == 503 and ready.json["checks"]["node"] == "draining"
        # A WebSocket handshake on a connection opened before is refused meanwhile.
        refused = await raw_request(for_ws, f"/ws?token={ann.access_token}", {
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert refused.status == 503 and refused.error_code == "service_unavailable"
        assert session.closed_with is None  # the drain goes on

        server.proc.send_signal(signal.SIGINT)
        assert await session.closed(10) == (1001, "server shutting down")
        assert await exit_code(server, 10) == 0
        assert time.monotonic() - started < long_drain / 2
        for sock in (for_poll, for_ready, for_ws):
            sock.close()
    finally:
        server.stop()
