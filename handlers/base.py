"""The base of every HTTP handler: JSON in and out, body limits, bearer auth, CORS, errors.

Handlers stay thin: parse and validate input (``messenger.validation``), call a service, render.
Any ``ApiError`` becomes ``{"error": {"code", "message"}}`` with its status; a store that does
not answer becomes 503; anything else is a bug and becomes a bare 500 ``internal_error``.

A refusal found before the body is read (no or a bad token, no such route) is answered once the
body has been read (it is bounded by ``MAX_BODY_BYTES``), so the connection stays in step and
keep-alive goes on; only a body declared too large is refused at once, with
``Connection: close``. Browsers on an origin in ``ALLOWED_ORIGINS`` (or this host) get CORS
headers, and their preflight ``OPTIONS`` is answered without a token.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any

import tornado.web

from actors.runtime import ActorError
from handlers.body import BoundedBody
from messenger import request_ids, validation
from messenger.errors import (
    ApiError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    OriginNotAllowed,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from messenger.jsonutil import dumps
from messenger.logs import fields
from messenger.origins import origin_allowed
from messenger.redaction import redact
from messenger.store import StoreUnavailable

if TYPE_CHECKING:
    from messenger.services import Services

log = logging.getLogger("messenger.http")

#: Request headers a browser may send cross-origin (answered in a preflight).
CORS_ALLOWED_HEADERS = "Authorization, Content-Type"
#: Response headers a cross-origin script may read.
CORS_EXPOSED_HEADERS = "Retry-After, WWW-Authenticate, Location, X-Request-ID"
#: How long a browser may cache a preflight answer, seconds.
CORS_MAX_AGE_SECONDS = 600


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
        self._set_cors_headers()

    # -- CORS ----------------------------------------------------------------------------
    def _cors_origin(self) -> str | None:
        """The request's ``Origin`` when it may read our answers, else None."""
        origin = self.request.headers.get("Origin")
        if origin is None:
            return None
        allowed = self.services.settings.allowed_origins
        return origin if origin_allowed(origin, self.request.host, allowed) else None

    def _set_cors_headers(self) -> None:
        origin = self._cors_origin()
        self.set_header("Vary", "Origin")
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS)

    async def options(self, *args: str, **kwargs: str) -> None:
        """A CORS preflight (or a plain ``OPTIONS``): the methods this resource takes."""
        methods = ", ".join(self.allowed_methods())
        if self.request.headers.get("Origin") is not None:
            if self._cors_origin() is None:
                raise OriginNotAllowed("this origin may not call this API")
            self.set_header("Access-Control-Allow-Methods", methods)
            self.set_header("Access-Control-Allow-Headers", CORS_ALLOWED_HEADERS)
            self.set_header("Access-Control-Max-Age", str(CORS_MAX_AGE_SECONDS))
        self.set_header("Allow", methods)
        self.clear_header("Content-Type")
        self.set_status(204)
        self.finish()

    # -- body ----------------------------------------------------------------------------
    async def prepare(self) -> None:
        self._body = BoundedBody(self.services.settings.max_body_bytes)
        if self._body.declared_too_large(self.request.headers.get("Content-Length")):
            # Refused before reading: the connection closes after this response.
            self.request.connection.set_max_body_size(self._body.limit)
            raise self._too_large()
        try:
            await self.check_request()
        except ApiError as error:
            self.refuse_after_body(error)

    async def check_request(self) -> None:
        """What is checked before the body: the bearer token (``requires_auth``, not for a
        preflight)."""
        if self.requires_auth and self.request.method != "OPTIONS":
            self.user_id = await self._authenticate()

    def refuse_after_body(self, error: ApiError) -> None:
        """Answer ``error`` in place of this request's method, once the body has been read.

        Tornado calls the method only when the whole body has arrived; answering there keeps
        the connection in step with the client, so a request pipelined behind this one is
        answered too.
        """

        async def refuse(*args: Any, **kwargs: Any) -> None:
            raise error

        setattr(self, (self.request.method or "get").lower(), refuse)

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
        return validation.parse_json_object(
            self._body.data(), max_depth=self.services.settings.json_max_depth)

    # -- auth ----------------------------------------------------------------------------
    async def _authenticate(self) -> str:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("a bearer access token is required")
        return (await self.services.authenticate(token.strip())).user_id

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP methods this handler implements (for ``Allow`` on a 405)."""
        base = tornado.web.RequestHandler
        methods = [m.upper() for m in ("get", "post", "put", "patch", "delete")
                   if getattr(cls, m) is not getattr(base, m)]
        return [*methods, "OPTIONS"]

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
        named = fields({"request_id": request_ids.request_id(self.request)})  # in JSON logs
        if isinstance(value, StoreUnavailable | ActorError):
            log.warning("%s during %s %s: %s", type(value).__name__, self.request.method,
                        redact(self.request.path), value, extra=named)
            return
        if isinstance(value, tornado.web.HTTPError):
            log.warning("%d %s %s: %s", value.status_code, self.request.method,
                        redact(self.request.uri or ""), value.log_message or "", extra=named)
            return
        log.error("uncaught exception during %s %s", self.request.method,
                  redact(self.request.uri or ""), exc_info=(typ, value, tb),  # type: ignore
                  extra=named)


class NotFoundHandler(BaseHandler):
    """Any path no route matches."""

    requires_auth = False

    async def check_request(self) -> None:
        raise NotFound("no such resource")

    @classmethod
    def allowed_methods(cls) -> list[str]:
        return []
