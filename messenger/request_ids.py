"""Request ids (API_CONTRACT.md §1 "Request id"): one per request, in ``X-Request-ID`` both ways.

A request's id is its own ``X-Request-ID`` when that is sane — 1..128 characters, each a letter,
a digit or one of ``-_.:=+/`` (so it can never break a log line or a header) — else 32 new
lower-case hex digits: 16 random ones drawn once per process, then the process's request count
(unique across processes and restarts with overwhelming odds, and a counter instead of 16 bytes
of ``os.urandom`` per request, which cost 6 % of a small request). ``request_id(request)``
decides once per request and remembers it for that request object only (a weak reference:
nothing outlives the request).

``RequestIdTransform`` (a Tornado output transform, so every answer passes it: errors, the
WebSocket handshake, static files) writes the id into the answer's ``X-Request-ID``. Log lines
name a request's id explicitly (its access line, its failures), never through a context
variable: actors and feeds are started by whichever request first needs them and would carry
that request's id for the rest of their lives.
"""

from __future__ import annotations

import itertools
import re
import secrets
import weakref

import tornado.httputil
import tornado.web

HEADER = "X-Request-ID"
MAX_LENGTH = 128
_SANE = re.compile(rf"[A-Za-z0-9._:=+/-]{{1,{MAX_LENGTH}}}")

_ids: weakref.WeakKeyDictionary[tornado.httputil.HTTPServerRequest, str] = (
    weakref.WeakKeyDictionary()
)


def accepted(value: str | None) -> str | None:
    """``value`` if a client's ``X-Request-ID`` may be used as is, else None. No I/O."""
    return value if value is not None and _SANE.fullmatch(value) else None


_PREFIX = secrets.token_hex(8)
_COUNT = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNT):016x}"


def request_id(request: tornado.httputil.HTTPServerRequest) -> str:
    """This request's id: its sane ``X-Request-ID``, else a new one; the same on every call."""
    found = _ids.get(request)
    if found is None:
        found = accepted(request.headers.get(HEADER)) or new_request_id()
        _ids[request] = found
    return found


def forget(request: tornado.httputil.HTTPServerRequest) -> None:
    """Drop the request's id now (a WebSocket's request lives as long as its session)."""
    _ids.pop(request, None)


class RequestIdTransform(tornado.web.OutputTransform):
    """Puts the request's id into the ``X-Request-ID`` header of its answer."""

    def __init__(self, request: tornado.httputil.HTTPServerRequest) -> None:
        self._id = request_id(request)

    def transform_first_chunk(
        self,
        status_code: int,
        headers: tornado.httputil.HTTPHeaders,
        chunk: bytes,
        finishing: bool,
    ) -> tuple[int, tornado.httputil.HTTPHeaders, bytes]:
        headers[HEADER] = self._id
        return status_code, headers, chunk
