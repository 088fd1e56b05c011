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


class Forbidden(ApiError):
    """An authenticated member asking for something members may not do (remove another)."""

    status = 403
    code = "forbidden"


class NotAGroup(ApiError):
    """A membership change on a direct chat (its two members are fixed)."""

    status = 422
    code = "not_a_group"


class EmailInUse(ApiError):
    status = 409
    code = "email_taken"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class FrameTooLarge(ApiError):
    """A WebSocket frame over ``WS_MAX_FRAME_BYTES`` (the socket stays open)."""

    status = 413
    code = "frame_too_large"


class UnknownFrameType(ApiError):
    status = 400
    code = "unknown_type"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"


class OriginNotAllowed(ApiError):
    status = 403
    code = "origin_not_allowed"


class UpgradeRequired(ApiError):
    """A plain HTTP request to the WebSocket endpoint."""

    status = 400
    code = "websocket_required"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class ServiceUnavailable(ApiError):
    status = 503
    code = "service_unavailable"


class InternalError(ApiError):
    status = 500
    code = "internal_error"


# -- uploads and attachments (API_CONTRACT.md §9) ------------------------------------------------
class InvalidSignature(ApiError):
    """A signed storage URL that is malformed, altered, for another method or expired."""

    status = 403
    code = "invalid_signature"


class UploadNotFound(NotFound):
    """Also what another user's (or an expired) upload looks like."""

    code = "upload_not_found"


class AttachmentNotFound(NotFound):
    """Also what a caller who is a member of no chat where it was posted sees."""

    code = "attachment_not_found"


class UploadMissing(ApiError):
    status = 409
    code = "upload_missing"


class AttachmentNotReady(ApiError):
    status = 409
    code = "attachment_not_ready"


class AttachmentInUse(ApiError):
    status = 409
    code = "attachment_in_use"


class UnknownAttachments(ApiError):
    status = 422
    code = "unknown_attachments"


class UploadTooLarge(ApiError):
    status = 422
    code = "upload_too_large"


class ContentTypeNotAllowed(ApiError):
    status = 422
    code = "content_type_not_allowed"


class UploadSizeMismatch(ApiError):
    status = 422
    code = "upload_size_mismatch"


class UploadTypeMismatch(ApiError):
    status = 422
    code = "upload_type_mismatch"


class StorageUnavailable(ServiceUnavailable):
    """The object storage did not answer."""

    code = "storage_unavailable"


# -- email: verification and password reset (API_CONTRACT.md §10) -------------------------------
class InvalidEmailToken(ApiError):
    """An emailed token that is unknown, expired, spent, or for the other purpose."""

    status = 400
    code = "invalid_email_token"


class EmailAlreadyVerified(ApiError):
    status = 409
    code = "email_already_verified"


class ResendTooSoon(RateLimited):
    """Another verification email within ``EMAIL_RESEND_INTERVAL_SECONDS``."""

    code = "resend_too_soon"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class TooManyAttempts(RateLimited):
    """An auth endpoint over one of its ``AUTH_LIMIT_*`` limits (code ``rate_limited``, with
    ``retry_after`` seconds in the body and a ``Retry-After`` header)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


# -- connections (API_CONTRACT.md §11) ---------------------------------------------------------
class ServerBusy(ServiceUnavailable):
    """This process holds ``MAX_CONNECTIONS`` connections; a new one is refused."""

    code = "server_busy"


class TooManyConnections(ApiError):
    """The client's address holds ``MAX_CONNECTIONS_PER_IP`` connections to this process."""

    status = 429
    code = "too_many_connections"


class TooManySessions(ApiError):
    """The user holds ``WS_MAX_SESSIONS_PER_USER`` WebSocket sessions on this process."""

    status = 429
    code = "too_many_sessions"
