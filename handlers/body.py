"""Request-body collection with a size limit (no I/O: the handler feeds it chunks).

A body declared too large by ``Content-Length`` is refused before any of it is read (clients that
send ``Expect: 100-continue`` never send it). A chunked body is collected up to the limit; past
it, the rest is read and thrown away, so the client can finish sending and then read the 413,
up to ``drain_limit`` bytes, after which the connection is cut.
"""

from __future__ import annotations

#: How much of an oversized chunked body is read and discarded before the connection is cut.
DRAIN_LIMIT_BYTES = 8 * 1024 * 1024


class BoundedBody:
    def __init__(self, limit: int, drain_limit: int = DRAIN_LIMIT_BYTES) -> None:
        self.limit = limit
        self.drain_limit = drain_limit
        self.too_large = False
        self._data = bytearray()
        self._seen = 0

    def declared_too_large(self, content_length: str | None) -> bool:
        """Whether a ``Content-Length`` header already rules the body out."""
        if content_length is None:
            return False
        length = content_length.strip()
        if not length.isdigit() or int(length) > self.limit:
            self.too_large = True
        return self.too_large

    def feed(self, chunk: bytes) -> bool:
        """Take a chunk; return True when the connection should be cut now."""
        self._seen += len(chunk)
        if self._seen > self.limit:
            self.too_large = True
            self._data.clear()
        else:
            self._data.extend(chunk)
        return self._seen > self.drain_limit

    def data(self) -> bytes:
        return bytes(self._data)
