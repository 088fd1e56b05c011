"""The building blocks of the OpenAPI document, shared by ``api_spec.py`` and its
``api_spec_*.py`` parts: field limits, the table of error codes, example values, and the helpers
that make schemas, request bodies, responses and operations.

Every module of the document imports this one and none imports another back: ``api_spec.py``
assembles the parts (``build_spec``).
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings

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

EXAMPLE_USER_ID = "6745a1f0c2b9e81d4a3f0b11"
EXAMPLE_OTHER_ID = "6745a1f0c2b9e81d4a3f0b12"
EXAMPLE_CHAT_ID = "6745a1f0c2b9e81d4a3f0c21"
EXAMPLE_MESSAGE_ID = "6745a1f0c2b9e81d4a3f0d31"
EXAMPLE_TIME = "2026-11-26T12:34:56.789Z"


# -- small schema helpers -----------------------------------------------------------------------
def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def described(schema: dict[str, Any], description: str | None) -> dict[str, Any]:
    if description is not None:
        schema["description"] = description
    return schema


def id_string() -> dict[str, Any]:
    return {"type": "string", "pattern": ID_PATTERN}


def id_schema(description: str = "A 24-hex-digit id (ObjectId form).") -> dict[str, Any]:
    return described(id_string(), description)


def timestamp() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date-time",
        "description": "ISO-8601 UTC with milliseconds, e.g. 2026-11-26T12:34:56.789Z.",
        "examples": [EXAMPLE_TIME],
    }


def object_schema(
    properties: dict[str, Any], required: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    schema.update(extra)
    return schema


def request_object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A request body: unknown keys are ignored, but no key may start with ``$``."""
    return object_schema(
        properties,
        required,
        additionalProperties=True,
        propertyNames={"not": {"pattern": "^\\$"}},
    )


# -- field schemas (shared by components and request bodies) ------------------------------------
def email() -> dict[str, Any]:
    return {"type": "string", "format": "email", "maxLength": EMAIL_MAX}


def password(min_length: int = 1, description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": min_length, "maxLength": PASSWORD_MAX_BYTES}
    return described(schema, description)


def display_name(description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": DISPLAY_NAME_MAX}
    return described(schema, description)


def chat_type() -> dict[str, Any]:
    return {"type": "string", "enum": ["direct", "group"]}


def title(description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": TITLE_MAX}
    return nullable(described(schema, description))


def message_text(settings: Settings, description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": settings.max_message_length}
    return described(schema, description)


def client_msg_id(description: str | None = None) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": CLIENT_MSG_ID_MAX}
    return nullable(described(schema, description))


def read_seq(description: str | None = None) -> dict[str, Any]:
    return described({"type": "integer", "minimum": 0}, description)


def check_state() -> dict[str, Any]:
    return {"type": "string", "enum": ["ok", "unavailable"]}


# -- request/response helpers -------------------------------------------------------------------
def json_content(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def json_body(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    return {"required": True, "content": json_content(schema, example)}


def ok(description: str, schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    return {"description": description, "content": json_content(schema, example)}


def error_example(code: str, field: str = "body") -> dict[str, Any]:
    detail: dict[str, Any] = {"code": code, "message": ERROR_CODES[code][1]}
    if code in ("validation_error", "unknown_members"):
        detail["field"] = field
    elif code in ("resend_too_soon", "rate_limited"):
        detail["retry_after"] = 42
    return {"error": detail}


def error_responses(*codes: str, field: str = "body") -> dict[str, Any]:
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
                    "schema": ref("Error"),
                    "examples": {
                        code: {"value": error_example(code, field)} for code in status_codes
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


AUTH_ERRORS = ("unauthorized", "invalid_token")
BODY_ERRORS = ("malformed_json", "payload_too_large", "validation_error")
SERVER_ERRORS = ("internal_error", "service_unavailable")


def operation(
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


def limits_note(*limits: tuple[str, tuple[int, float], str]) -> str:
    """How an auth endpoint is rate-limited: (setting, its default, what it counts)."""
    clauses = [f"{count} {what} per {seconds:g} s ({name})"
             for name, (count, seconds), what in limits]
    return (" Rate-limited (429 `rate_limited` with Retry-After), checked after the field checks "
            "and before any database or bcrypt work: at most " + "; ".join(clauses) + ".")


def path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": id_string(),
    }
