"""Raw HTTP/1.1 over a plain socket, for tests of framing, pipelining and connection limits.

Blocking sockets with timeouts: run these from a thread (``asyncio.to_thread``) when the test's
event loop must keep running.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def json(self) -> object:
        return orjson.loads(self.body)

    @property
    def error_code(self) -> str:
        return self.json["error"]["code"]  # type: ignore[index]


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the server from loopback address ``source``."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))


def request_bytes(method: str, path: str, *, headers: dict[str, str] | None = None,
                  body: bytes = b"", content_length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if content_length and (body or method in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_responses(sock: socket.socket, count: int | None = None,
                   timeout: float = 10.0) -> tuple[list[RawResponse], bool]:
    """Read responses until ``count`` are complete or the server closes the connection.

    Returns the responses and whether the connection was closed by the server.
    """
    deadline = time.monotonic() + timeout
    buffer = b""
    responses: list[RawResponse] = []
    closed = False
    while count is None or len(responses) < count:
        parsed = _parse_one(buffer)
        if parsed is not None:
            response, buffer = parsed
            responses.append(response)
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buffer += chunk
    if closed:
        parsed = _parse_one(buffer)
        while parsed is not None:
            responses.append(parsed[0])
            parsed = _parse_one(parsed[1])
    return responses, closed


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` seconds (reading and dropping)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def _parse_one(buffer: bytes) -> tuple[RawResponse, bytes] | None:
    head, sep, rest = buffer.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return RawResponse(status, headers, rest[:length]), rest[length:]
