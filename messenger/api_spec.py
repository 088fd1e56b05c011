"""The OpenAPI 3.1 document of the REST API, built as plain Python data.

``scripts/gen_openapi`` writes it to ``openapi.json``; ``tests/test_openapi.py`` checks that the
file is fresh and that its paths and methods are exactly the server's routes. The human-readable
contract is ``API_CONTRACT.md``; both follow the same decisions.

This module holds the core schemas and paths and assembles the document (``build_spec``) with
the realtime, users, email and attachment parts (``api_spec_realtime.py``,
``api_spec_users.py``, ``api_spec_email.py``, ``api_spec_attachments.py``). The building blocks
they all use — limits, error codes, examples, schema and operation helpers — are public names
of ``api_spec_parts.py``.

Limits come from the *defaults* in ``config/settings.py`` (``load_settings({})``), never from the
current environment, so the output is the same on every machine.
"""

from __future__ import annotations

from typing import Any

import orjson

from config.settings import ENVIRONMENTS, Settings, load_settings
from messenger import api_spec_parts as parts
from messenger.api_spec_attachments import attachment_paths, attachment_schemas
from messenger.api_spec_email import email_paths, email_schemas
from messenger.api_spec_ops import ops_paths
from messenger.api_spec_parts import ERROR_CODES
from messenger.api_spec_realtime import realtime_paths, realtime_schemas
from messenger.api_spec_users import user_paths, user_schemas
from messenger.api_spec_web import web_paths

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"


# -- examples ----------------------------------------------------------------------------------
def _user_example(*, email: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": parts.EXAMPLE_USER_ID,
        "display_name": "Ann",
        "created_at": parts.EXAMPLE_TIME,
    }
    if email:
        body["email"] = "ann@example.com"
        body["email_verified"] = True
    return body


def _message_example() -> dict[str, Any]:
    return {
        "id": parts.EXAMPLE_MESSAGE_ID,
        "chat_id": parts.EXAMPLE_CHAT_ID,
        "seq": 7,
        "sender_id": parts.EXAMPLE_USER_ID,
        "text": "hello",
        "client_msg_id": "c-1f2e3d",
        "created_at": parts.EXAMPLE_TIME,
        "attachments": [],
    }


def _chat_view_example() -> dict[str, Any]:
    return {
        "id": parts.EXAMPLE_CHAT_ID,
        "type": "direct",
        "title": None,
        "member_ids": [parts.EXAMPLE_USER_ID, parts.EXAMPLE_OTHER_ID],
        "created_at": parts.EXAMPLE_TIME,
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
        "id": parts.id_schema(),
        "display_name": parts.display_name(),
        "created_at": parts.timestamp(),
    }


def _schemas(settings: Settings) -> dict[str, Any]:
    user_with_email = _user_properties()
    user_with_email["email"] = parts.email()
    user_with_email["email_verified"] = {
        "type": "boolean",
        "description": "The email was proven by a verification or password-reset link.",
    }
    return {
        "User": parts.object_schema(
            _user_properties(),
            description="A user as others see it (no email).",
            examples=[_user_example(email=False)],
        ),
        "UserWithEmail": parts.object_schema(
            user_with_email,
            description="The caller's own record: a User plus its email and whether it is "
            "verified.",
            examples=[_user_example(email=True)],
        ),
        "TokenBody": parts.object_schema(
            {
                "user": parts.ref("UserWithEmail"),
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
        "Chat": parts.object_schema(
            {
                "id": parts.id_schema(),
                "type": parts.chat_type(),
                "title": parts.title(),
                "member_ids": {
                    "type": "array",
                    "items": parts.id_schema(),
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "Every member in join order, the creator included unless "
                    "they left the group.",
                },
                "created_at": parts.timestamp(),
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
                parts.ref("Chat"),
                parts.object_schema(
                    {
                        "last_message": parts.nullable(parts.ref("Message")),
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
        "Message": parts.object_schema(
            {
                "id": parts.id_schema(),
                "chat_id": parts.id_schema(),
                "seq": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "1, 2, 3, ... per chat: no gaps, no duplicates.",
                },
                "sender_id": parts.id_schema(),
                "text": {
                    "type": "string",
                    "maxLength": settings.max_message_length,
                    "description": "Empty only in a message with attachments.",
                },
                "client_msg_id": parts.client_msg_id(),
                "created_at": parts.timestamp(),
                "attachments": {
                    "type": "array",
                    "items": parts.ref("Attachment"),
                    "maxItems": settings.max_attachments_per_message,
                    "description": "In the order sent; [] when none.",
                },
            },
            description="Shared by REST, WebSocket and long-polling.",
            examples=[_message_example()],
        ),
        "MessagePage": parts.object_schema(
            {
                "messages": {
                    "type": "array",
                    "items": parts.ref("Message"),
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
        "ChatList": parts.object_schema(
            {
                "chats": {
                    "type": "array",
                    "items": parts.ref("ChatView"),
                    "maxItems": settings.max_chats_listed,
                    "description": "Most recent activity first.",
                }
            },
            examples=[{"chats": [_chat_view_example()]}],
        ),
        "ReadState": parts.object_schema(
            {
                "chat_id": parts.id_schema(),
                "seq": parts.read_seq("The caller's read position now."),
                "unread_count": {"type": "integer", "minimum": 0},
            },
            examples=[{"chat_id": parts.EXAMPLE_CHAT_ID, "seq": 7, "unread_count": 0}],
        ),
        "Error": parts.object_schema(
            {
                "error": parts.object_schema(
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
            examples=[parts.error_example("validation_error")],
        ),
        "Health": parts.object_schema(
            {"status": {"type": "string", "const": "ok"}},
            examples=[{"status": "ok"}],
        ),
        "Ready": parts.object_schema(
            {
                "status": parts.check_state(),
                "checks": {
                    "type": "object",
                    "properties": {
                        "node": {
                            "type": "string",
                            "enum": ["ok", "draining"],
                            "description": "`draining` once the process is shutting down "
                            "(SIGTERM or SIGINT).",
                        },
                    },
                    "required": ["node"],
                    "propertyNames": {"enum": ["mongodb", "sqlite", "in-process", "redis", "node"]},
                    "additionalProperties": parts.check_state(),
                    "minProperties": 3,
                    "maxProperties": 3,
                    "description": "Three entries: the store in use (`mongodb` or `sqlite`: it "
                    "answers a ping within 2 s), the broker in use (`in-process`, or `redis`: "
                    "connected), and `node`.",
                },
            },
            examples=[{"status": "ok", "checks": {"sqlite": "ok", "in-process": "ok",
                                                  "node": "ok"}}],
        ),
    }


# -- paths --------------------------------------------------------------------------------------
def _paths(settings: Settings) -> dict[str, Any]:
    chat_param = parts.path_param("chat_id", "Chat id; unknown, malformed or not a member -> 404.")
    user_param = parts.path_param("user_id", "User id; unknown or malformed -> 404.")
    member_errors = (*parts.AUTH_ERRORS, "chat_not_found", *parts.SERVER_ERRORS)

    return {
        "/": {
            "get": parts.operation(
                "getRoot",
                "meta",
                "Service identity",
                {
                    "200": parts.ok(
                        "Service name and environment.",
                        parts.object_schema(
                            {
                                "app": {"type": "string", "const": "web-messenger"},
                                "env": {"type": "string", "enum": list(ENVIRONMENTS)},
                            }
                        ),
                        {"app": "web-messenger", "env": "production"},
                    ),
                    **parts.error_responses("internal_error"),
                },
                auth=False,
            )
        },
        "/api/healthz": {
            "get": parts.operation(
                "getHealth",
                "meta",
                "Liveness",
                {
                    "200": parts.ok("The process serves requests.", parts.ref("Health")),
                    **parts.error_responses("internal_error"),
                },
                auth=False,
            )
        },
        "/api/openapi.json": {
            "get": parts.operation(
                "getOpenApi",
                "meta",
                "This API's OpenAPI document",
                {
                    "200": parts.ok(
                        "The OpenAPI 3.1 document (the repository's openapi.json).",
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                    ),
                    "304": {"description": "Not modified: `If-None-Match` named its ETag."},
                    **parts.error_responses("internal_error"),
                },
                auth=False,
            )
        },
        "/api/readyz": {
            "get": parts.operation(
                "getReady",
                "meta",
                "Readiness (store, broker, not shutting down)",
                {
                    "200": parts.ok(
                        "The store answers, the broker is connected, and the process is not "
                        "shutting down.",
                        parts.ref("Ready"),
                        {"status": "ok", "checks": {"mongodb": "ok", "redis": "ok",
                                                    "node": "ok"}},
                    ),
                    "503": parts.ok(
                        "A check is not `ok` (`service_unavailable`; the message names each "
                        "failing one): the store does not answer, the broker is not "
                        "connected, or the process is shutting down (`node`: `draining`; "
                        "the answer then says `Connection: close`).",
                        {"allOf": [parts.ref("Ready"), parts.ref("Error")]},
                        {
                            "status": "unavailable",
                            "checks": {"mongodb": "ok", "redis": "ok", "node": "draining"},
                            "error": {
                                "code": "service_unavailable",
                                "message": "this node is shutting down",
                            },
                        },
                    ),
                    **parts.error_responses("internal_error"),
                },
                auth=False,
            )
        },
        "/api/auth/register": {
            "post": parts.operation(
                "register",
                "auth",
                "Create an account and start a session",
                {
                    "201": parts.ok("Account created.", parts.ref("TokenBody")),
                    **parts.error_responses(
                        *parts.BODY_ERRORS, "email_taken", "rate_limited", *parts.SERVER_ERRORS,
                        field="email",
                    ),
                },
                auth=False,
                description="The email is trimmed and lower-cased before it is stored."
                + parts.limits_note(
                    ("AUTH_LIMIT_REGISTER_PER_IP", settings.auth_limit_register_per_ip,
                     "registrations per client address"),
                    ("AUTH_LIMIT_REGISTER_PER_EMAIL", settings.auth_limit_register_per_email,
                     "per email"),
                ),
                request_body=parts.json_body(
                    parts.request_object(
                        {
                            "email": parts.email(),
                            "password": parts.password(
                                parts.PASSWORD_MIN_CHARS,
                                f"At least {parts.PASSWORD_MIN_CHARS} characters and "
                                f"at most {parts.PASSWORD_MAX_BYTES} bytes in UTF-8.",
                            ),
                            "display_name": parts.display_name(
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
            "post": parts.operation(
                "login",
                "auth",
                "Start a session with email and password",
                {
                    "200": parts.ok("Logged in.", parts.ref("TokenBody")),
                    **parts.error_responses(
                        *parts.BODY_ERRORS, "invalid_credentials", "rate_limited",
                        *parts.SERVER_ERRORS, field="email",
                    ),
                },
                auth=False,
                request_body=parts.json_body(
                    parts.request_object(
                        {
                            "email": parts.email(),
                            "password": parts.password(),
                        },
                        ["email", "password"],
                    ),
                    {"email": "ann@example.com", "password": "correct horse battery"},
                ),
                description="Unknown email and wrong password answer alike."
                + parts.limits_note(
                    ("AUTH_LIMIT_LOGIN_PER_IP", settings.auth_limit_login_per_ip,
                     "attempts per client address"),
                    ("AUTH_LIMIT_LOGIN_FAILURES_PER_ACCOUNT",
                     settings.auth_limit_login_failures_per_account,
                     "failed logins per email (successes are not counted)"),
                ),
            )
        },
        "/api/auth/refresh": {
            "post": parts.operation(
                "refresh",
                "auth",
                "Rotate a refresh token into a new token pair",
                {
                    "200": parts.ok("A new pair; the presented token is now spent.",
                                    parts.ref("TokenBody")),
                    **parts.error_responses(
                        *parts.BODY_ERRORS,
                        "invalid_token",
                        "refresh_token_reused",
                        "rate_limited",
                        *parts.SERVER_ERRORS,
                        field="refresh_token",
                    ),
                },
                auth=False,
                description=parts.limits_note(
                    ("AUTH_LIMIT_REFRESH_PER_IP", settings.auth_limit_refresh_per_ip,
                     "refreshes per client address"),
                    ("AUTH_LIMIT_REFRESH_PER_ACCOUNT", settings.auth_limit_refresh_per_account,
                     "per account"),
                ).lstrip()
                + " Each refresh token works once. Presenting a spent token again "
                "answers 401 `refresh_token_reused` and revokes its whole family: the pair "
                "issued from it stops refreshing (401 `invalid_token`).",
                request_body=parts.json_body(
                    parts.request_object(
                        {
                            "refresh_token": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": parts.REFRESH_TOKEN_MAX,
                            }
                        },
                        ["refresh_token"],
                    ),
                    {"refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."},
                ),
            )
        },
        "/api/users/{user_id}": {
            "get": parts.operation(
                "getUser",
                "users",
                "Another user's public record",
                {
                    "200": parts.ok("The user (no email).", parts.ref("User")),
                    **parts.error_responses(*parts.AUTH_ERRORS, "user_not_found",
                                            *parts.SERVER_ERRORS),
                },
                parameters=[user_param],
            )
        },
        "/api/chats": {
            "get": parts.operation(
                "listChats",
                "chats",
                "The caller's chats, most recent activity first",
                {
                    "200": parts.ok(
                        f"At most {settings.max_chats_listed} chats (MAX_CHATS_LISTED). A new "
                        "message moves its chat to the top; a chat without messages ranks by "
                        "its creation time.",
                        parts.ref("ChatList"),
                    ),
                    **parts.error_responses(*parts.AUTH_ERRORS, *parts.SERVER_ERRORS),
                },
            ),
            "post": parts.operation(
                "createChat",
                "chats",
                "Create a direct or group chat",
                {
                    "200": parts.ok(
                        "The direct chat between these two users already existed.",
                        parts.ref("ChatView"),
                    ),
                    "201": parts.ok("Chat created.", parts.ref("ChatView")),
                    **parts.error_responses(
                        *parts.AUTH_ERRORS,
                        *parts.BODY_ERRORS,
                        "unknown_members",
                        *parts.SERVER_ERRORS,
                        field="member_ids",
                    ),
                },
                description="The caller is always a member, listed or not; duplicate ids "
                "collapse. direct: exactly one other user and no title. group: at most "
                f"{settings.max_group_members} members in all (MAX_GROUP_MEMBERS).",
                request_body=parts.json_body(
                    parts.request_object(
                        {
                            "type": parts.chat_type(),
                            "member_ids": {
                                "type": "array",
                                "items": parts.id_string(),
                                "maxItems": settings.max_group_members,
                            },
                            "title": parts.title("Groups only; trimmed."),
                        },
                        ["type", "member_ids"],
                    ),
                    {"type": "group", "member_ids": [parts.EXAMPLE_OTHER_ID], "title": "Team"},
                ),
            ),
        },
        "/api/chats/{chat_id}": {
            "get": parts.operation(
                "getChat",
                "chats",
                "One chat as the caller sees it",
                {"200": parts.ok("The chat.", parts.ref("ChatView")),
                 **parts.error_responses(*member_errors)},
                parameters=[chat_param],
            )
        },
        "/api/chats/{chat_id}/read": {
            "post": parts.operation(
                "markRead",
                "chats",
                "Move the caller's read position forward",
                {
                    "200": parts.ok("The read position now.", parts.ref("ReadState")),
                    **parts.error_responses(
                        *parts.AUTH_ERRORS, *parts.BODY_ERRORS, "chat_not_found",
                        *parts.SERVER_ERRORS, field="seq"
                    ),
                },
                description="Forward only: a lower seq leaves the position unchanged; a seq "
                "past last_seq is clamped to last_seq.",
                parameters=[chat_param],
                request_body=parts.json_body(
                    parts.request_object({"seq": parts.read_seq()}, ["seq"]),
                    {"seq": 7},
                ),
            )
        },
        "/api/chats/{chat_id}/members": {
            "post": parts.operation(
                "addMembers",
                "chats",
                "Add users to a group (any member may)",
                {
                    "200": parts.ok("The chat now, as the caller sees it.", parts.ref("ChatView")),
                    **parts.error_responses(
                        *parts.AUTH_ERRORS,
                        *parts.BODY_ERRORS,
                        "chat_not_found",
                        "not_a_group",
                        "unknown_members",
                        *parts.SERVER_ERRORS,
                        field="user_ids",
                    ),
                },
                description="New members are appended to member_ids in the order given; "
                "existing members and repeats are ignored. Groups only (a direct chat -> 422 "
                f"not_a_group); at most {settings.max_group_members} members in all "
                "(MAX_GROUP_MEMBERS). Every member gets a members_added event.",
                parameters=[chat_param],
                request_body=parts.json_body(
                    parts.request_object(
                        {
                            "user_ids": {
                                "type": "array",
                                "items": parts.id_string(),
                                "minItems": 1,
                                "maxItems": settings.max_group_members,
                            }
                        },
                        ["user_ids"],
                    ),
                    {"user_ids": [parts.EXAMPLE_OTHER_ID]},
                ),
            )
        },
        "/api/chats/{chat_id}/members/{user_id}": {
            "delete": parts.operation(
                "leaveChat",
                "chats",
                "Leave a group (user_id must be the caller)",
                {
                    "204": {"description": "Left the group; no body."},
                    **parts.error_responses(
                        *parts.AUTH_ERRORS,
                        "forbidden",
                        "chat_not_found",
                        "not_a_group",
                        *parts.SERVER_ERRORS,
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
            "get": parts.operation(
                "listMessages",
                "messages",
                "A page of history, oldest first",
                {
                    "200": parts.ok(
                        "The `limit` messages immediately before `before_id` (or the newest).",
                        parts.ref("MessagePage"),
                    ),
                    **parts.error_responses(
                        *parts.AUTH_ERRORS,
                        "chat_not_found",
                        "validation_error",
                        *parts.SERVER_ERRORS,
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
                        "schema": parts.id_string(),
                    },
                ],
            ),
            "post": parts.operation(
                "sendMessage",
                "messages",
                "Send a message (idempotent with client_msg_id)",
                {
                    "200": parts.ok(
                        "Replay: this sender already sent this client_msg_id in this chat; the "
                        "original message, nothing new stored.",
                        parts.ref("Message"),
                    ),
                    "201": parts.ok("Message stored with the next seq.", parts.ref("Message")),
                    **parts.error_responses(
                        *parts.AUTH_ERRORS,
                        *parts.BODY_ERRORS,
                        "chat_not_found",
                        "attachment_not_ready",
                        "attachment_in_use",
                        "unknown_attachments",
                        *parts.SERVER_ERRORS,
                        field="text",
                    ),
                },
                description="Sending moves the sender's read position up to the new message. "
                "`text` is required unless `attachment_ids` lists at least one upload; then it "
                "may be absent, null or empty (API_CONTRACT.md §4, §9).",
                parameters=[chat_param],
                request_body=parts.json_body(
                    parts.request_object(
                        {
                            "text": {
                                "type": ["string", "null"],
                                "maxLength": settings.max_message_length,
                                "description": "Not only whitespace; stored as sent "
                                "(MAX_MESSAGE_LENGTH). Required (1 character at least) "
                                "without attachments.",
                            },
                            "client_msg_id": parts.client_msg_id("Client-chosen idempotency key."),
                            "attachment_ids": parts.nullable(
                                {
                                    "type": "array",
                                    "items": parts.id_string(),
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
            {"name": "web", "description": "The browser client (/app/) and this document's "
             "viewer (/api/docs)."},
        ],
        "paths": {
            **_paths(settings),
            **realtime_paths(settings),
            **user_paths(settings),
            **email_paths(settings),
            **attachment_paths(settings),
            **ops_paths(),
            **web_paths(),
        },
        "components": {
            "schemas": {
                **_schemas(settings),
                **realtime_schemas(),
                **user_schemas(),
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
