"""Connection limits against the running server (API_CONTRACT.md §11): one client address at
its cap of slow connections does not starve others, the process cap, the header timeout,
``X-Forwarded-For`` only from trusted proxies, and the per-user WebSocket session cap."""

from __future__ import annotations

import asyncio
import resource
import socket
import time
from collections.abc import Iterator

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from messenger.connection_limits import ConnectionLimiter, Refusal
from tests.conftest import server_env
from tests.support.api import Api
from tests.support.processes import MessengerServer
from tests.support.raw_http import connect, read_responses, request_bytes, wait_closed
from tests.support.ws import WsClient

PER_IP = 1000
#: The load test holds PER_IP + a few hundred sockets in this process and as many in the server
#: (which inherits this limit): raise the soft descriptor limit if the hard one allows.
FDS_NEEDED = 4 * PER_IP


def _enough_descriptors() -> bool:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= FDS_NEEDED:
        return True
    if hard == resource.RLIM_INFINITY or hard >= FDS_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FDS_NEEDED, hard))
        return True
    return False


pytestmark = pytest.mark.skipif(
    not _enough_descriptors(),
    reason=f"the load test needs {FDS_NEEDED} file descriptors (ulimit -Hn is lower)",
)
SLOW_HEADER = b"GET /api/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def _server(request: pytest.FixtureRequest, tmp: pytest.TempPathFactory, name: str,
            **env: str) -> MessengerServer:
    tmp_dir = str(tmp.mktemp(name))
    return MessengerServer({**server_env("sqlite", request, tmp_dir), **env}).start()


@pytest.fixture(scope="module")
def capped_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MessengerServer]:
    proc = _server(request, tmp_path_factory, "capped", MAX_CONNECTIONS_PER_IP=str(PER_IP),
                   HTTP_HEADER_TIMEOUT_SECONDS="60", LIMIT_LOG_INTERVAL_SECONDS="0.5",
                   LOG_LEVEL="INFO", WS_MAX_SESSIONS_PER_USER="3")
    yield proc
    proc.stop()


def _open_slow(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` connections that each send part of a header and then nothing."""
    socks = []
    for _ in range(count):
        sock = connect(port, source)
        sock.sendall(SLOW_HEADER)
        socks.append(sock)
    return socks


def _refusals(port: int, count: int, source: str = "127.0.0.1") -> list[int | None]:
    """Open ``count`` connections that send nothing; the status each is answered with."""
    statuses: list[int | None] = []
    for _ in range(count):
        sock = connect(port, source)
        responses, _closed = read_responses(sock, 1, timeout=5.0)
        statuses.append(responses[0].status if responses else None)
        if responses:
            assert responses[0].error_code == "too_many_connections"
            assert responses[0].header("Retry-After") == "1"
        sock.close()
    return statuses


def _healthz_from(port: int, source: str) -> tuple[int, float]:
    started = time.monotonic()
    sock = connect(port, source, timeout=5.0)
    try:
        sock.sendall(request_bytes("GET", "/api/healthz", headers={"Connection": "close"}))
        responses, _ = read_responses(sock, 1, timeout=5.0)
    finally:
        sock.close()
    return (responses[0].status if responses else 0), time.monotonic() - started


async def _until(condition, within: float = 10.0, every: float = 0.05) -> None:
    """Wait for ``condition()`` to hold, checking every ``every`` s; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(every)


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


async def test_an_address_at_its_cap_of_slow_connections_does_not_starve_others(
    capped_server: MessengerServer,
) -> None:
    port = capped_server.port
    log_before = len(capped_server.log)
    slow = await asyncio.to_thread(_open_slow, port, PER_IP)
    try:
        # every further connection from the same address is refused at once, with a JSON 429
        statuses = await asyncio.to_thread(_refusals, port, 200)
        assert statuses == [429] * 200
        # another address is served quickly while 127.0.0.1 holds its cap
        for _ in range(5):
            status, elapsed = await asyncio.to_thread(_healthz_from, port, "127.0.0.2")
            assert status == 200
            assert elapsed < 1.0, elapsed
        # the 200 refusals became one summary line, not 200 log lines
        async def summarised() -> bool:
            return any("refused" in line for line in capped_server.log[log_before:])
        await _until(summarised)
        # the slow connections are still held (none was dropped to make room)
        assert all(_still_open(sock) for sock in slow)
    finally:
        for sock in slow:
            sock.close()
    new_lines = capped_server.log[log_before:]
    assert len(new_lines) < 20, new_lines
    refused_lines = [line for line in new_lines if "refused" in line]
    assert refused_lines and "200" in "".join(refused_lines), refused_lines
    assert not any("Traceback" in line or "EMFILE" in line for line in new_lines)

    # once they are closed, the address gets its slots back
    async def served_again() -> bool:
        status, _ = await asyncio.to_thread(_healthz_from, port, "127.0.0.1")
        return status == 200
    await _until(served_again)


async def test_a_user_has_at_most_the_configured_websocket_sessions(
    capped_server: MessengerServer,
) -> None:
    api = Api(capped_server.base_url)
    ann, bob = await api.register(), await api.register()
    sessions = [await WsClient.connect(capped_server.base_url, ann.access_token)
                for _ in range(3)]
    url = capped_server.base_url.replace("http://", "ws://") + f"/ws?token={ann.access_token}"
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(url))
    assert refused.value.code == 429
    assert refused.value.response is not None
    assert b'"too_many_sessions"' in refused.value.response.body
    # others are not affected
    other = await WsClient.connect(capped_server.base_url, bob.access_token)
    other.close()
    # a closed session frees its slot
    sessions.pop().close()

    async def admitted() -> bool:
        try:
            sessions.append(await WsClient.connect(capped_server.base_url, ann.access_token))
        except HTTPClientError as exc:
            assert exc.code == 429
            return False
        return True
    await _until(admitted)
    for session in sessions:
        session.close()


async def test_the_process_cap_refuses_with_503_and_recovers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc = _server(request, tmp_path_factory, "process-cap", MAX_CONNECTIONS="20",
                   HTTP_HEADER_TIMEOUT_SECONDS="60")
    try:
        held = await asyncio.to_thread(_open_slow, proc.port, 20, "127.0.0.3")

        def refused_from_elsewhere() -> tuple[int | None, str]:
            sock = connect(proc.port, "127.0.0.4")
            responses, _ = read_responses(sock, 1, timeout=5.0)
            sock.close()
            return (responses[0].status, responses[0].error_code) if responses else (None, "")

        assert await asyncio.to_thread(refused_from_elsewhere) == (503, "server_busy")
        for sock in held:
            sock.close()

        async def served() -> bool:
            status, _ = await asyncio.to_thread(_healthz_from, proc.port, "127.0.0.4")
            return status == 200
        await _until(served)
    finally:
        proc.stop()


async def test_a_connection_that_sends_no_complete_header_is_closed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc = _server(request, tmp_path_factory, "header-timeout", HTTP_HEADER_TIMEOUT_SECONDS="1")
    try:
        def trickle() -> tuple[bool, float]:
            """A byte every 0.2 s, never ending the header: closed after about 1 s anyway."""
            sock = connect(proc.port)
            started = time.monotonic()
            try:
                sock.sendall(SLOW_HEADER)
                while time.monotonic() - started < 8:
                    try:
                        sock.sendall(b"a")
                    except OSError:
                        return True, time.monotonic() - started
                    if wait_closed(sock, 0.2):
                        return True, time.monotonic() - started
                return False, time.monotonic() - started
            finally:
                sock.close()

        closed, after = await asyncio.to_thread(trickle)
        assert closed, "a trickling header was never cut off"
        assert after < 5.0, after  # the default (10 s) would not have cut it yet
        status, _ = await asyncio.to_thread(_healthz_from, proc.port, "127.0.0.1")
        assert status == 200  # a client that sends its request is served
    finally:
        proc.stop()


async def test_forwarded_for_counts_only_from_trusted_proxies(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc = _server(request, tmp_path_factory, "proxied", TRUSTED_PROXIES="127.0.0.5",
                   MAX_CONNECTIONS_PER_IP="3", HTTP_HEADER_TIMEOUT_SECONDS="60")
    try:
        def via(source: str, client: str) -> tuple[socket.socket, int | None]:
            sock = connect(proc.port, source)
            sock.sendall(request_bytes("GET", "/api/healthz",
                                       headers={"X-Forwarded-For": f"198.51.100.9, {client}"}))
            responses, _ = read_responses(sock, 1, timeout=5.0)
            return sock, responses[0].status if responses else None

        def scenario() -> dict[str, list[int | None]]:
            held, seen = [], {}
            try:
                # through the trusted proxy, each client has its own 3 slots
                for client in ("203.0.113.7", "203.0.113.8"):
                    seen[client] = []
                    for _ in range(4):
                        sock, status = via("127.0.0.5", client)
                        held.append(sock)
                        seen[client].append(status)
                # an untrusted peer's X-Forwarded-For is ignored: its own address is counted
                seen["untrusted"] = []
                for n in range(3):
                    sock, status = via("127.0.0.6", f"203.0.113.{100 + n}")
                    held.append(sock)
                    seen["untrusted"].append(status)
                sock = connect(proc.port, "127.0.0.6")  # refused as it is accepted
                held.append(sock)
                responses, _ = read_responses(sock, 1, timeout=5.0)
                seen["untrusted"].append(responses[0].status if responses else None)
            finally:
                for sock in held:
                    sock.close()
            return seen

        seen = await asyncio.to_thread(scenario)
        assert seen["203.0.113.7"] == [200, 200, 200, 429]
        assert seen["203.0.113.8"] == [200, 200, 200, 429]
        assert seen["untrusted"] == [200, 200, 200, 429]
    finally:
        proc.stop()


# -- the counting itself, without I/O ----------------------------------------------------------
def test_limiter_counts_per_address_and_in_all() -> None:
    limiter = ConnectionLimiter(max_total=4, max_per_address=2)
    assert limiter.admit("a") is None and limiter.admit("a") is None
    assert limiter.admit("a") is Refusal.ADDRESS_FULL
    assert limiter.admit(None) is None  # a proxy's connection, keyed later
    assert limiter.rekey(None, "a") is Refusal.ADDRESS_FULL
    assert limiter.rekey(None, "b") is None
    assert limiter.admit("c") is None
    assert limiter.admit("d") is Refusal.SERVER_FULL
    assert (limiter.total, limiter.count("a"), limiter.count("b")) == (4, 2, 1)
    limiter.release("a")
    assert limiter.admit("a") is None
    summary = limiter.take_summary()
    assert summary is not None and "refused 3 connections" in summary
    assert limiter.take_summary() is None
    for key in ("a", "a", "b", "c"):
        limiter.release(key)
    assert limiter.total == 0 and limiter.count("a") == 0
