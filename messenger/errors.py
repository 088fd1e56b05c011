"""Typed errors with stable codes.

Every error a client can see is an :class:`ApiError` subclass carrying an HTTP status and a
machine-readable ``code``. Handlers render them as ``{"error": {"code", "message"}}``; nothing
else reaches a client (unexpected exceptions become ``internal_error`` without details).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error meant for the client."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return {"error": body}


class MalformedJson(ApiError):
    status = 400
    code = "malformed_json"


class ValidationFailed(ApiError):
    """A field is missing, of the wrong type or out of range (``field`` names it)."""

    status = 422
    code = "validation_error"

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, field=field)
        self.field = field


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"


class InvalidToken(Unauthorized):
    code = "invalid_token"


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class ChatNotFound(NotFound):
    """Also what a non-member sees, so chat ids cannot be probed."""

    code = "chat_not_found"


class EmailInUse(ApiError):
    status = 409
    code = "email_taken"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class ServiceUnavailable(ApiError):
    status = 503
    code = "service_unavailable"


class InternalError(ApiError):
    status = 500
    code = "internal_error"
