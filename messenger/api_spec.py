"""The OpenAPI 3.1 document of the REST API, built as plain Python data.

``scripts/gen_openapi`` writes it to ``openapi.json``; ``tests/test_openapi.py`` checks that the
file is fresh and that its paths and methods are exactly the server's routes. The human-readable
contract is ``API_CONTRACT.md``; both follow the same decisions.

Limits come from the *defaults* in ``config/settings.py`` (``load_settings({})``), never from the
current environment, so the output is the same on every machine.
"""

from __future__ import annotations

from typing import Any

import orjson

from config.settings import ENVIRONMENTS, Settings, load_settings

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"

ID_PATTERN = "^[0-9a-f]{24}$"
EMAIL_MAX = 254
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_BYTES = 72
DISPLAY_NAME_MAX = 64
TITLE_MAX = 100
CLIENT_MSG_ID_MAX = 128
REFRESH_TOKEN_MAX = 4096
FILENAME_MAX = 255

# Every error code a client can see: code -> (HTTP status, when it happens).
ERROR_CODES: dict[str, tuple[int, str]] = {
    "malformed_json": (400, "The body is not valid JSON or not UTF-8."),
    "unauthorized": (401, "The Authorization header is missing or not `Bearer <token>`."),
    "invalid_token": (
        401,
        "The token is malformed, badly signed, expired, has the wrong iss/aud or typ, or "
        "(refresh) is unknown or of a revoked family.",
    ),
    "invalid_credentials": (401, "Login with an unknown email or a wrong password."),
    "refresh_token_reused": (
        401,
        "A refresh token that was already spent was presented again; its whole family is revoked.",
    ),
    "invalid_signature": (
        403,
        "The signed storage URL is malformed, altered, for another method, or expired.",
    ),
    "upload_not_found": (404, "No such upload of the caller's (unknown, malformed or expired)."),
    "attachment_not_found": (
        404,
        "No such attachment, never posted, or the caller is a member of no chat where it was "
        "posted.",
    ),
    "upload_missing": (409, "Nothing has been uploaded for this upload yet."),
    "attachment_not_ready": (409, "An attachment_ids entry is an upload not completed yet."),
    "attachment_in_use": (409, "An attachment_ids entry is attached to another message already."),
    "unknown_attachments": (
        422,
        "An attachment_ids entry is no upload of the sender's (unknown, expired or someone "
        "else's).",
    ),
    "upload_too_large": (422, "The declared size is over UPLOAD_MAX_BYTES (`field`: size)."),
    "content_type_not_allowed": (
        422,
        "The declared content type is not in UPLOAD_ALLOWED_TYPES (`field`: content_type).",
    ),
    "upload_size_mismatch": (
        422,
        "The stored object's size (or the PUT's Content-Length) differs from the declared size.",
    ),
    "upload_type_mismatch": (
        422,
        "The stored object's type (or the PUT's Content-Type) differs from the declared one, or "
        "its first bytes are not of that type.",
    ),
    "storage_unavailable": (503, "The object storage did not answer; retry later."),
    "not_found": (404, "No route matches the path."),
    "user_not_found": (404, "No user with this id (or the id is malformed)."),
    "chat_not_found": (
        404,
        "No such chat, the caller is not a member, or the id is malformed.",
    ),
    "method_not_allowed": (405, "The route exists but not with this method."),
    "email_taken": (409, "An account with this email already exists."),
    "email_already_verified": (409, "The caller's email is verified already."),
    "invalid_email_token": (
        400,
        "The emailed token is unknown, expired, already used, or for the other purpose.",
    ),
    "resend_too_soon": (
        429,
        "A verification email went out less than EMAIL_RESEND_INTERVAL_SECONDS ago; "
        "`retry_after` says in how many seconds to try again (also the Retry-After header).",
    ),
    "payload_too_large": (413, "The body is larger than MAX_BODY_BYTES."),
    "validation_error": (
        422,
        "A field is missing, of the wrong type, out of range, or a key starts with `$`; "
        "`field` names it.",
    ),
    "unknown_members": (
        422,
        "Well-formed member ids that belong to no user (`field`: member_ids, or user_ids when "
        "adding members).",
    ),
    "not_a_group": (422, "Members of a direct chat never change (add or leave)."),
    "forbidden": (403, "Members may only remove themselves from a group."),
    "websocket_required": (400, "A plain HTTP request to /ws (no WebSocket upgrade)."),
    "unknown_type": (400, "A WebSocket frame with an unknown type."),
    "origin_not_allowed": (
        403,
        "The Origin may not open a WebSocket here, or call the API (CORS preflight); see "
        "ALLOWED_ORIGINS.",
    ),
    "too_many_sessions": (
        429,
        "The user already holds WS_MAX_SESSIONS_PER_USER WebSocket sessions on this process.",
    ),
    "frame_too_large": (413, "A WebSocket frame over WS_MAX_FRAME_BYTES."),
    "rate_limited": (
        429,
        "Too many requests to this auth endpoint from this client address or for this account "
        "(the AUTH_LIMIT_* settings); `retry_after` says in how many seconds to try again (also "
        "the Retry-After header). Over WebSocket: too many frames per second.",
    ),
    "internal_error": (500, "A bug on the server; no details are given."),
    "service_unavailable": (503, "The database did not answer; retry later."),
}

_EXAMPLE_USER_ID = "6745a1f0c2b9e81d4a3f0b11"
_EXAMPLE_OTHER_ID = "6745a1f0c2b9e81d4a3f0b12"
_EXAMPLE_CHAT_ID = "6745a1f0c2b9e81d4a3f0c21"
_EXAMPLE_MESSAGE_ID = "6745a1f0c2b9e81d4a3f0d31"
_EXAMPLE_TIME = "2026-11-26T12:34:56.789Z"


# -- small schema helpers -----------------------------------------------------------------------
def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _described(schema: dict[str, Any], description: str | None) -> dict[str, Any]:
    if description is not None:
        schema["description"] = description
    return schema


def _id_string() -> dict[str, Any]:
    return {"type": "string", "pattern": ID_PATTERN}


def _id(description: str = "A 24-hex-digit id (ObjectId form).") -> dict[str, Any]:
    return _described(_id_string(), description)


def _timestamp() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date-time",
        "description": "ISO-8601 UTC with milliseconds, e.g. 2026-11-26T12:34:56.789Z.",
        "examples": [_EXAMPLE_TIME],
    }


def _object(
    properties: dict[str, Any], required: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    schema.update(extra)
    return schema


def _request_object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A request body: unknown keys are ignored, but no key may start with ``$``."""
    return _object(
        properties,
        required,
        additionalProperties=True,
        propertyNames={"not": {"pattern": "^\\$"}},
    )


# -- field schemas (shared by components and request bodies) ------------------------------------
def _email() -> dict[str, Any]:
    return {"type": "string", "format": "email", "maxLength": EMAIL_MAX}


def _password(min_length: int = 1, description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": min_length, "maxLength": PASSWORD_MAX_BYTES}
    return _described(schema, description)


def _display_name(description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": DISPLAY_NAME_MAX}
    return _described(schema, description)


def _chat_type() -> dict[str, Any]:
    return {"type": "string", "enum": ["direct", "group"]}


def _title(description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": TITLE_MAX}
    return _nullable(_described(schema, description))


def _message_text(settings: Settings, description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": settings.max_message_length}
    return _described(schema, description)


def _client_msg_id(description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": CLIENT_MSG_ID_MAX}
    return _nullable(_described(schema, description))


def _read_seq(description: str | None = None) -> dict[str, Any]:
    return _described({"type": "integer", "minimum": 0}, description)


def _check_state() -> dict[str, Any]:
    return {"type": "string", "enum": ["ok", "unavailable"]}


# -- request/response helpers -------------------------------------------------------------------
def _json_content(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _json_body(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    return {"required": True, "content": _json_content(schema, example)}


def _ok(description: str, schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema, example)}


def _error_example(code: str, field: str = "body") -> dict[str, Any]:
    detail: dict[str, Any] = {"code": code, "message": ERROR_CODES[code][1]}
    if code in ("validation_error", "unknown_members"):
        detail["field"] = field
    elif code in ("resend_too_soon", "rate_limited"):
        detail["retry_after"] = 42
    return {"error": detail}


def _error_responses(*codes: str, field: str = "body") -> dict[str, Any]:
    """Responses for the given error codes, grouped by status (each with the Error envelope).

    ``field`` is the field named in the ``validation_error`` example.
    """
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_CODES[code][0], []).append(code)
    responses: dict[str, Any] = {}
    for status, status_codes in sorted(by_status.items()):
        lines = [f"`{code}`: {ERROR_CODES[code][1]}" for code in status_codes]
        response: dict[str, Any] = {
            "description": "\n\n".join(lines),
            "content": {
                "application/json": {
                    "schema": _ref("Error"),
                    "examples": {
                        code: {"value": _error_example(code, field)} for code in status_codes
                    },
                }
            },
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": "Always present on 401: `Bearer ...`.",
                    "schema": {"type": "string"},
                }
            }
        if status == 429:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again (= `retry_after`).",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        responses[str(status)] = response
    return responses


_AUTH_ERRORS = ("unauthorized", "invalid_token")
_BODY_ERRORS = ("malformed_json", "payload_too_large", "validation_error")
_SERVER_ERRORS = ("internal_error", "service_unavailable")


def _operation(
    operation_id: str,
    tag: str,
    summary: str,
    responses: dict[str, Any],
    *,
    auth: bool = True,
    description: str | None = None,
    request_body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "security": [{"bearerAuth": []}] if auth else [],
        "responses": responses,
    }
    if description is not None:
        op["description"] = description
    if request_body is not None:
        op["requestBody"] = request_body
    if parameters:
        op["parameters"] = parameters
    return op


def _limits_note(*limits: tuple[str, tuple[int, float], str]) -> str:
    """How an auth endpoint is rate-limited: (setting, its default, what it counts)."""
    parts = [f"{count} {what} per {seconds:g} s ({name})"
             for name, (count, seconds), what in limits]
    return (" Rate-limited (429 `rate_limited` with Retry-After), checked after the field checks "
            "and before any database or bcrypt work: at most " + "; ".join(parts) + ".")


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": _id_string(),
    }


# -- examples ----------------------------------------------------------------------------------
def _user_example(*, email: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": _EXAMPLE_USER_ID,
        "display_name": "Ann",
        "created_at": _EXAMPLE_TIME,
    }
    if email:
        body["email"] = "ann@example.com"
        body["email_verified"] = True
    return body


def _message_example() -> dict[str, Any]:
    return {
        "id": _EXAMPLE_MESSAGE_ID,
        "chat_id": _EXAMPLE_CHAT_ID,
        "seq": 7,
        "sender_id": _EXAMPLE_USER_ID,
        "text": "hello",
        "client_msg_id": "c-1f2e3d",
        "created_at": _EXAMPLE_TIME,
        "attachments": [],
    }


def _chat_view_example() -> dict[str, Any]:
    return {
        "id": _EXAMPLE_CHAT_ID,
        "type": "direct",
        "title": None,
        "member_ids": [_EXAMPLE_USER_ID, _EXAMPLE_OTHER_ID],
        "created_at": _EXAMPLE_TIME,
        "last_seq": 7,
        "last_message": _message_example(),
        "unread_count": 0,
    }


def _token_example(settings: Settings) -> dict[str, Any]:
    return {
        "user": _user_example(email=True),
        "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
        "refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
        "token_type": "bearer",
        "expires_in": settings.access_token_ttl,
    }


# -- components ---------------------------------------------------------------------------------
def _user_properties() -> dict[str, Any]:
    return {
        "id": _id(),
        "display_name": _display_name(),
        "created_at": _timestamp(),
    }


def _schemas(settings: Settings) -> dict[str, Any]:
    user_with_email = _user_properties()
    user_with_email["email"] = _email()
    user_with_email["email_verified"] = {
        "type": "boolean",
        "description": "The email was proven by a verification or password-reset link.",
    }
    return {
        "User": _object(
            _user_properties(),
            description="A user as others see it (no email).",
            examples=[_user_example(email=False)],
        ),
        "UserWithEmail": _object(
            user_with_email,
            description="The caller's own record: a User plus its email and whether it is "
            "verified.",
            examples=[_user_example(email=True)],
        ),
        "TokenBody": _object(
            {
                "user": _ref("UserWithEmail"),
                "access_token": {"type": "string", "description": "JWT, typ=access."},
                "refresh_token": {
                    "type": "string",
                    "description": "JWT, typ=refresh; single use (rotated by /api/auth/refresh).",
                },
                "token_type": {"type": "string", "const": "bearer"},
                "expires_in": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Access-token lifetime in seconds (ACCESS_TOKEN_TTL_SECONDS, "
                    f"default {settings.access_token_ttl}).",
                },
            },
            examples=[_token_example(settings)],
        ),
        "Chat": _object(
            {
                "id": _id(),
                "type": _chat_type(),
                "title": _title(),
                "member_ids": {
                    "type": "array",
                    "items": _id(),
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "Every member in join order, the creator included unless "
                    "they left the group.",
                },
                "created_at": _timestamp(),
                "last_seq": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "seq of the newest message; 0 for a chat without messages.",
                },
            },
        ),
        "ChatView": {
            "description": "A chat as the caller sees it.",
            "allOf": [
                _ref("Chat"),
                _object(
                    {
                        "last_message": _nullable(_ref("Message")),
                        "unread_count": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "last_seq minus the caller's read position.",
                        },
                    }
                ),
            ],
            "examples": [_chat_view_example()],
        },
        "Message": _object(
            {
                "id": _id(),
                "chat_id": _id(),
                "seq": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "1, 2, 3, ... per chat: no gaps, no duplicates.",
                },
                "sender_id": _id(),
                "text": {
                    "type": "string",
                    "maxLength": settings.max_message_length,
                    "description": "Empty only in a message with attachments.",
                },
                "client_msg_id": _client_msg_id(),
                "created_at": _timestamp(),
                "attachments": {
                    "type": "array",
                    "items": _ref("Attachment"),
                    "maxItems": settings.max_attachments_per_message,
                    "description": "In the order sent; [] when none.",
                },
            },
            description="Shared by REST, WebSocket and long-polling.",
            examples=[_message_example()],
        ),
        "MessagePage": _object(
            {
                "messages": {
                    "type": "array",
                    "items": _ref("Message"),
                    "maxItems": settings.page_size_max,
                    "description": "Oldest first.",
                },
                "has_more": {
                    "type": "boolean",
                    "description": "True when older messages exist before the first one here.",
                },
            },
            examples=[{"messages": [_message_example()], "has_more": False}],
        ),
        "ChatList": _object(
            {
                "chats": {
                    "type": "array",
                    "items": _ref("ChatView"),
                    "maxItems": settings.max_chats_listed,
                    "description": "Most recent activity first.",
                }
            },
            examples=[{"chats": [_chat_view_example()]}],
        ),
        "ReadState": _object(
            {
                "chat_id": _id(),
                "seq": _read_seq("The caller's read position now."),
                "unread_count": {"type": "integer", "minimum": 0},
            },
            examples=[{"chat_id": _EXAMPLE_CHAT_ID, "seq": 7, "unread_count": 0}],
        ),
        "Error": _object(
            {
                "error": _object(
                    {
                        "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                        "message": {
                            "type": "string",
                            "description": "For humans; may change at any time.",
                        },
                        "field": {
                            "type": "string",
                            "description": "The offending field (validation errors only).",
                        },
                    },
                    ["code", "message"],
                    additionalProperties=True,
                )
            },
            description="The envelope of every error response.",
            examples=[_error_example("validation_error")],
        ),
        "Health": _object(
            {"status": {"type": "string", "const": "ok"}},
            examples=[{"status": "ok"}],
        ),
        "Ready": _object(
            {
                "status": _check_state(),
                "checks": {
                    "type": "object",
                    "propertyNames": {"enum": ["mongodb", "sqlite"]},
                    "additionalProperties": _check_state(),
                    "description": "One entry: the storage backend in use.",
                },
            },
            examples=[{"status": "ok", "checks": {"sqlite": "ok"}}],
        ),
    }


# -- paths --------------------------------------------------------------------------------------
def _paths(settings: Settings) -> dict[str, Any]:
    chat_param = _path_param("chat_id", "Chat id; unknown, malformed or not a member -> 404.")
    user_param = _path_param("user_id", "User id; unknown or malformed -> 404.")
    member_errors = (*_AUTH_ERRORS, "chat_not_found", *_SERVER_ERRORS)

    return {
        "/": {
            "get": _operation(
                "getRoot",
                "meta",
                "Service identity",
                {
                    "200": _ok(
                        "Service name and environment.",
                        _object(
                            {
                                "app": {"type": "string", "const": "web-messenger"},
                                "env": {"type": "string", "enum": list(ENVIRONMENTS)},
                            }
                        ),
                        {"app": "web-messenger", "env": "production"},
                    ),
                    **_error_responses("internal_error"),
                },
                auth=False,
            )
        },
        "/api/healthz": {
            "get": _operation(
                "getHealth",
                "meta",
                "Liveness",
                {
                    "200": _ok("The process serves requests.", _ref("Health")),
                    **_error_responses("internal_error"),
                },
                auth=False,
            )
        },
        "/api/readyz": {
            "get": _operation(
                "getReady",
                "meta",
                "Readiness (the database answers)",
                {
                    "200": _ok(
                        "The database answers.",
                        _ref("Ready"),
                        {"status": "ok", "checks": {"mongodb": "ok"}},
                    ),
                    "503": _ok(
                        "The database does not answer (`service_unavailable`).",
                        {"allOf": [_ref("Ready"), _ref("Error")]},
                        {
                            "status": "unavailable",
                            "checks": {"mongodb": "unavailable"},
                            "error": {
                                "code": "service_unavailable",
                                "message": "mongodb is not answering",
                            },
                        },
                    ),
                    **_error_responses("internal_error"),
                },
                auth=False,
            )
        },
        "/api/auth/register": {
            "post": _operation(
                "register",
                "auth",
                "Create an account and start a session",
                {
                    "201": _ok("Account created.", _ref("TokenBody")),
                    **_error_responses(
                        *_BODY_ERRORS, "email_taken", "rate_limited", *_SERVER_ERRORS,
                        field="email",
                    ),
                },
                auth=False,
                description="The email is trimmed and lower-cased before it is stored."
                + _limits_note(
                    ("AUTH_LIMIT_REGISTER_PER_IP", settings.auth_limit_register_per_ip,
                     "registrations per client address"),
                    ("AUTH_LIMIT_REGISTER_PER_EMAIL", settings.auth_limit_register_per_email,
                     "per email"),
                ),
                request_body=_json_body(
                    _request_object(
                        {
                            "email": _email(),
                            "password": _password(
                                PASSWORD_MIN_CHARS,
                                f"At least {PASSWORD_MIN_CHARS} characters and "
                                f"at most {PASSWORD_MAX_BYTES} bytes in UTF-8.",
                            ),
                            "display_name": _display_name(
                                "Trimmed; 1..64 characters after trimming, no control characters."
                            ),
                        },
                        ["email", "password", "display_name"],
                    ),
                    {
                        "email": "ann@example.com",
                        "password": "correct horse battery",
                        "display_name": "Ann",
                    },
                ),
            )
        },
        "/api/auth/login": {
            "post": _operation(
                "login",
                "auth",
                "Start a session with email and password",
                {
                    "200": _ok("Logged in.", _ref("TokenBody")),
                    **_error_responses(
                        *_BODY_ERRORS, "invalid_credentials", "rate_limited", *_SERVER_ERRORS,
                        field="email",
                    ),
                },
                auth=False,
                request_body=_json_body(
                    _request_object(
                        {
                            "email": _email(),
                            "password": _password(),
                        },
                        ["email", "password"],
                    ),
                    {"email": "ann@example.com", "password": "correct horse battery"},
                ),
                description="Unknown email and wrong password answer alike."
                + _limits_note(
                    ("AUTH_LIMIT_LOGIN_PER_IP", settings.auth_limit_login_per_ip,
                     "attempts per client address"),
                    ("AUTH_LIMIT_LOGIN_FAILURES_PER_ACCOUNT",
                     settings.auth_limit_login_failures_per_account,
                     "failed logins per email (successes are not counted)"),
                ),
            )
        },
        "/api/auth/refresh": {
            "post": _operation(
                "refresh",
                "auth",
                "Rotate a refresh token into a new token pair",
                {
                    "200": _ok("A new pair; the presented token is now spent.", _ref("TokenBody")),
                    **_error_responses(
                        *_BODY_ERRORS,
                        "invalid_token",
                        "refresh_token_reused",
                        "rate_limited",
                        *_SERVER_ERRORS,
                        field="refresh_token",
                    ),
                },
                auth=False,
                description=_limits_note(
                    ("AUTH_LIMIT_REFRESH_PER_IP", settings.auth_limit_refresh_per_ip,
                     "refreshes per client address"),
                    ("AUTH_LIMIT_REFRESH_PER_ACCOUNT", settings.auth_limit_refresh_per_account,
                     "per account"),
                ).lstrip()
                + " Each refresh token works once. Presenting a spent token again "
                "answers 401 `refresh_token_reused` and revokes its whole family: the pair "
                "issued from it stops refreshing (401 `invalid_token`).",
                request_body=_json_body(
                    _request_object(
                        {
                            "refresh_token": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": REFRESH_TOKEN_MAX,
                            }
                        },
                        ["refresh_token"],
                    ),
                    {"refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."},
                ),
            )
        },
        "/api/users/me": {
            "get": _operation(
                "getMe",
                "users",
                "The caller's own record",
                {
                    "200": _ok("The caller.", _ref("UserWithEmail")),
                    **_error_responses(*_AUTH_ERRORS, *_SERVER_ERRORS),
                },
            )
        },
        "/api/users/{user_id}": {
            "get": _operation(
                "getUser",
                "users",
                "Another user's public record",
                {
                    "200": _ok("The user (no email).", _ref("User")),
                    **_error_responses(*_AUTH_ERRORS, "user_not_found", *_SERVER_ERRORS),
                },
                parameters=[user_param],
            )
        },
        "/api/chats": {
            "get": _operation(
                "listChats",
                "chats",
                "The caller's chats, most recent activity first",
                {
                    "200": _ok(
                        f"At most {settings.max_chats_listed} chats (MAX_CHATS_LISTED). A new "
                        "message moves its chat to the top; a chat without messages ranks by "
                        "its creation time.",
                        _ref("ChatList"),
                    ),
                    **_error_responses(*_AUTH_ERRORS, *_SERVER_ERRORS),
                },
            ),
            "post": _operation(
                "createChat",
                "chats",
                "Create a direct or group chat",
                {
                    "200": _ok(
                        "The direct chat between these two users already existed.",
                        _ref("ChatView"),
                    ),
                    "201": _ok("Chat created.", _ref("ChatView")),
                    **_error_responses(
                        *_AUTH_ERRORS,
                        *_BODY_ERRORS,
                        "unknown_members",
                        *_SERVER_ERRORS,
                        field="member_ids",
                    ),
                },
                description="The caller is always a member, listed or not; duplicate ids "
                "collapse. direct: exactly one other user and no title. group: at most "
                f"{settings.max_group_members} members in all (MAX_GROUP_MEMBERS).",
                request_body=_json_body(
                    _request_object(
                        {
                            "type": _chat_type(),
                            "member_ids": {
                                "type": "array",
                                "items": _id_string(),
                                "maxItems": settings.max_group_members,
                            },
                            "title": _title("Groups only; trimmed."),
                        },
                        ["type", "member_ids"],
                    ),
                    {"type": "group", "member_ids": [_EXAMPLE_OTHER_ID], "title": "Team"},
                ),
            ),
        },
        "/api/chats/{chat_id}": {
            "get": _operation(
                "getChat",
                "chats",
                "One chat as the caller sees it",
                {"200": _ok("The chat.", _ref("ChatView")), **_error_responses(*member_errors)},
                parameters=[chat_param],
            )
        },
        "/api/chats/{chat_id}/read": {
            "post": _operation(
                "markRead",
                "chats",
                "Move the caller's read position forward",
                {
                    "200": _ok("The read position now.", _ref("ReadState")),
                    **_error_responses(
                        *_AUTH_ERRORS, *_BODY_ERRORS, "chat_not_found", *_SERVER_ERRORS, field="seq"
                    ),
                },
                description="Forward only: a lower seq leaves the position unchanged; a seq "
                "past last_seq is clamped to last_seq.",
                parameters=[chat_param],
                request_body=_json_body(
                    _request_object({"seq": _read_seq()}, ["seq"]),
                    {"seq": 7},
                ),
            )
        },
        "/api/chats/{chat_id}/members": {
            "post": _operation(
                "addMembers",
                "chats",
                "Add users to a group (any member may)",
                {
                    "200": _ok("The chat now, as the caller sees it.", _ref("ChatView")),
                    **_error_responses(
                        *_AUTH_ERRORS,
                        *_BODY_ERRORS,
                        "chat_not_found",
                        "not_a_group",
                        "unknown_members",
                        *_SERVER_ERRORS,
                        field="user_ids",
                    ),
                },
                description="New members are appended to member_ids in the order given; "
                "existing members and repeats are ignored. Groups only (a direct chat -> 422 "
                f"not_a_group); at most {settings.max_group_members} members in all "
                "(MAX_GROUP_MEMBERS). Every member gets a members_added event.",
                parameters=[chat_param],
                request_body=_json_body(
                    _request_object(
                        {
                            "user_ids": {
                                "type": "array",
                                "items": _id_string(),
                                "minItems": 1,
                                "maxItems": settings.max_group_members,
                            }
                        },
                        ["user_ids"],
                    ),
                    {"user_ids": [_EXAMPLE_OTHER_ID]},
                ),
            )
        },
        "/api/chats/{chat_id}/members/{user_id}": {
            "delete": _operation(
                "leaveChat",
                "chats",
                "Leave a group (user_id must be the caller)",
                {
                    "204": {"description": "Left the group; no body."},
                    **_error_responses(
                        *_AUTH_ERRORS,
                        "forbidden",
                        "chat_not_found",
                        "not_a_group",
                        *_SERVER_ERRORS,
                    ),
                },
                description="Members may only remove themselves (anyone else -> 403 "
                "forbidden). Groups only (a direct chat -> 422 not_a_group). The remaining "
                "members and the one who left get a member_removed event.",
                parameters=[
                    chat_param,
                    {
                        "name": "user_id",
                        "in": "path",
                        "required": True,
                        "description": "The caller's own id.",
                        "schema": {"type": "string"},
                    },
                ],
            )
        },
        "/api/chats/{chat_id}/messages": {
            "get": _operation(
                "listMessages",
                "messages",
                "A page of history, oldest first",
                {
                    "200": _ok(
                        "The `limit` messages immediately before `before_id` (or the newest).",
                        _ref("MessagePage"),
                    ),
                    **_error_responses(
                        *_AUTH_ERRORS,
                        "chat_not_found",
                        "validation_error",
                        *_SERVER_ERRORS,
                        field="limit",
                    ),
                },
                description="Next older page: pass the first message's id as `before_id` "
                "while `has_more` is true.",
                parameters=[
                    chat_param,
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "Page size (PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX); "
                        "out of range -> 422 field limit.",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": settings.page_size_max,
                            "default": settings.page_size_default,
                        },
                    },
                    {
                        "name": "before_id",
                        "in": "query",
                        "required": False,
                        "description": "A message id of this chat; malformed or foreign -> "
                        "422 field before_id.",
                        "schema": _id_string(),
                    },
                ],
            ),
            "post": _operation(
                "sendMessage",
                "messages",
                "Send a message (idempotent with client_msg_id)",
                {
                    "200": _ok(
                        "Replay: this sender already sent this client_msg_id in this chat; the "
                        "original message, nothing new stored.",
                        _ref("Message"),
                    ),
                    "201": _ok("Message stored with the next seq.", _ref("Message")),
                    **_error_responses(
                        *_AUTH_ERRORS,
                        *_BODY_ERRORS,
                        "chat_not_found",
                        "attachment_not_ready",
                        "attachment_in_use",
                        "unknown_attachments",
                        *_SERVER_ERRORS,
                        field="text",
                    ),
                },
                description="Sending moves the sender's read position up to the new message. "
                "`text` is required unless `attachment_ids` lists at least one upload; then it "
                "may be absent, null or empty (API_CONTRACT.md §4, §9).",
                parameters=[chat_param],
                request_body=_json_body(
                    _request_object(
                        {
                            "text": {
                                "type": ["string", "null"],
                                "maxLength": settings.max_message_length,
                                "description": "Not only whitespace; stored as sent "
                                "(MAX_MESSAGE_LENGTH). Required (1 character at least) "
                                "without attachments.",
                            },
                            "client_msg_id": _client_msg_id("Client-chosen idempotency key."),
                            "attachment_ids": _nullable(
                                {
                                    "type": "array",
                                    "items": _id_string(),
                                    "maxItems": settings.max_attachments_per_message,
                                    "uniqueItems": True,
                                    "description": "Ready uploads of the sender's, not attached "
                                    "elsewhere (MAX_ATTACHMENTS_PER_MESSAGE).",
                                }
                            ),
                        },
                        [],
                    ),
                    {"text": "hello", "client_msg_id": "c-1f2e3d"},
                ),
            ),
        },
    }


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document (deterministic: defaults only, no environment)."""
    from messenger.api_spec_attachments import attachment_paths, attachment_schemas
    from messenger.api_spec_email import email_paths, email_schemas
    from messenger.api_spec_realtime import realtime_paths, realtime_schemas

    settings = load_settings({})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "messenger HTTP API",
            "version": API_VERSION,
            "description": "REST API of the messenger chat server. The human contract, with "
            "the rules behind these shapes, is API_CONTRACT.md.",
        },
        "tags": [
            {"name": "meta", "description": "Identity, liveness, readiness."},
            {"name": "auth", "description": "Accounts and token pairs."},
            {"name": "users", "description": "User records."},
            {"name": "chats", "description": "Chats and read positions."},
            {"name": "messages", "description": "History and sending."},
            {"name": "realtime", "description": "WebSocket, long polling, typing."},
            {"name": "attachments", "description": "Uploads, attachments and the signed "
             "storage URLs of local-disk storage."},
            {"name": "email", "description": "Email verification, password reset, the pages "
             "the emailed links open."},
        ],
        "paths": {
            **_paths(settings),
            **realtime_paths(settings),
            **email_paths(settings),
            **attachment_paths(settings),
        },
        "components": {
            "schemas": {
                **_schemas(settings),
                **realtime_schemas(),
                **email_schemas(),
                **attachment_schemas(settings),
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Access token from TokenBody (HS256, typ=access).",
                }
            },
        },
    }


def dump_spec(spec: dict[str, Any]) -> bytes:
    """The exact bytes of ``openapi.json``: sorted keys, 2-space indent, trailing newline."""
    return orjson.dumps(spec, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
