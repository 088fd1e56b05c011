"""The base of every HTTP handler: JSON in and out, body limits, bearer auth, error envelope.

Handlers stay thin: parse and validate input (``messenger.validation``), call a service, render.
Any ``ApiError`` becomes ``{"error": {"code", "message"}}`` with its status; a store that does
not answer becomes 503; anything else is a bug and becomes a bare 500 ``internal_error``.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any

import tornado.web

from actors.runtime import ActorError
from handlers.body import BoundedBody
from messenger import validation
from messenger.errors import (
    ApiError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from messenger.jsonutil import dumps
from messenger.store import StoreUnavailable
from messenger.tokens import ACCESS

if TYPE_CHECKING:
    from messenger.services import Services

log = logging.getLogger("messenger.http")


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """JSON API handler. Subclasses set ``requires_auth`` and implement get/post."""

    requires_auth = True
    user_id: str

    @property
    def services(self) -> Services:
        return self.application.services  # type: ignore[attr-defined]

    @property
    def client_address(self) -> str:
        """The client's IP address; ``X-Forwarded-For`` counts only from ``TRUSTED_PROXIES``."""
        proxies = self.application.trusted_proxies  # type: ignore[attr-defined]
        forwarded = self.request.headers.get("X-Forwarded-For")
        return proxies.client(self.request.remote_ip or "", forwarded)

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    # -- body ----------------------------------------------------------------------------
    def prepare(self) -> None:
        self._body = BoundedBody(self.services.settings.max_body_bytes)
        if self._body.declared_too_large(self.request.headers.get("Content-Length")):
            # Refused before reading: the connection closes after this response.
            self.request.connection.set_max_body_size(self._body.limit)
            raise self._too_large()
        if self.requires_auth:
            self.user_id = self._authenticate()

    def data_received(self, chunk: bytes) -> None:
        if self._body.feed(chunk) and not self._finished:
            # Far past the limit: answer now; the connection is cut after the response and
            # the handler method, which still runs once, finds the request finished.
            error = self._too_large()
            self.send_error(error.status, exc_info=(type(error), error, None))

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is larger than {self._body.limit} bytes")

    def json_body(self) -> dict[str, Any]:
        if self._body.too_large:
            raise self._too_large()
        return validation.parse_json_object(self._body.data())

    # -- auth ----------------------------------------------------------------------------
    def _authenticate(self) -> str:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("a bearer access token is required")
        return self.services.tokens.decode(token.strip(), ACCESS).user_id

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP methods this handler implements (for ``Allow`` on a 405)."""
        base = tornado.web.RequestHandler
        return [m.upper() for m in ("get", "post", "put", "patch", "delete")
                if getattr(cls, m) is not getattr(base, m)]

    def compute_etag(self) -> None:
        """No ETags: answers are per-user and ``no-store``; hashing every body buys nothing."""
        return None

    # -- output --------------------------------------------------------------------------
    def send_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = self._api_error(status_code, kwargs.get("exc_info"))
        self.clear()
        self.set_status(error.status)
        if error.status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="messenger"')
        if error.status == 413:
            self.set_header("Connection", "close")
        if error.status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            self.set_header("Retry-After", str(retry_after))
        self.finish(dumps(error.to_json()))

    @staticmethod
    def _api_error(status_code: int, exc_info: Any) -> ApiError:
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, StoreUnavailable):
            return ServiceUnavailable("the database is not answering; try again shortly")
        if isinstance(exc, ActorError):  # overloaded, timed out, or restarting after a failure
            return ServiceUnavailable("the server is busy; try again shortly")
        if status_code == 404:
            return NotFound("no such resource")
        if status_code == 405:
            return MethodNotAllowed("method not allowed on this resource")
        if isinstance(exc, tornado.web.HTTPError) and 400 <= status_code < 500:
            return ApiError(exc.log_message or "bad request", code="bad_request")
        return InternalError("internal server error")

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(value, ApiError):
            return
        if isinstance(value, StoreUnavailable | ActorError):
            log.warning("%s during %s %s: %s", type(value).__name__, self.request.method,
                        self.request.path, value)
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    """Any path no route matches."""

    requires_auth = False

    def prepare(self) -> None:
        raise NotFound("no such resource")
