"""Request framing rules checked before a request reaches the application, and the raw JSON
error responses written when a connection is refused outside any handler. No I/O.

A request whose body length is ambiguous is refused (RFC 9112 §6.3): a ``Content-Length`` that
is repeated, a list (``2, 2``) or not a plain decimal number, or one sent together with
``Transfer-Encoding``. Each of these is how request smuggling and desynchronised pipelines
start, so the answer is 400 and the connection is closed without reading what follows.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
from tornado.httputil import HTTPHeaders

from messenger.errors import ApiError


def framing_error(headers: HTTPHeaders) -> str | None:
    """Why this request's body length cannot be trusted, or None if it can."""
    lengths = headers.get_list("Content-Length")
    if len(lengths) > 1:
        return "more than one Content-Length header"
    if lengths:
        value = lengths[0].strip()
        if not value.isascii() or not value.isdigit():
            return "Content-Length must be one decimal number"
        if "Transfer-Encoding" in headers:
            return "Content-Length and Transfer-Encoding together"
    encodings = headers.get_list("Transfer-Encoding")
    if len(encodings) > 1 or (encodings and encodings[0].strip().lower() != "chunked"):
        return "the only Transfer-Encoding accepted is one 'chunked'"
    return None


def error_response(error: ApiError, retry_after: int | None = None) -> bytes:
    """A complete ``HTTP/1.1`` response carrying ``error`` that closes the connection."""
    body = orjson.dumps(error.to_json())
    reason = HTTPStatus(error.status).phrase
    lines = [
        f"HTTP/1.1 {error.status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body
