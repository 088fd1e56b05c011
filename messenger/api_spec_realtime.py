"""The real-time part of the OpenAPI document: ``/ws``, ``/api/events`` and typing.

Kept apart from ``api_spec`` so that module stays about the REST resources; ``build_spec``
merges these paths and schemas. The WebSocket frames themselves are specified in
API_CONTRACT.md §8 (OpenAPI cannot describe them).
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from messenger import api_spec_parts as parts
from messenger.realtime.resume import MAX_CURSOR_CHARS

EXAMPLE_CURSOR = "v1.8f44aa2a7deeb126.42"
#: The characters a cursor is made of (its encoding is opaque to clients).
CURSOR_PATTERN = "^[0-9A-Za-z._-]*$"


def realtime_schemas() -> dict[str, Any]:
    return {
        "Event": {
            "type": "object",
            "description": "One event of the user's stream (API_CONTRACT.md §8 lists the types "
            "and their fields).",
            "properties": {
                "event_id": {"type": "string", "maxLength": MAX_CURSOR_CHARS,
                             "description": "The session's cursor after this event (opaque)."},
                "type": {"type": "string"},
            },
            "required": ["event_id", "type"],
            "additionalProperties": True,
        },
        "EventBatch": {
            "type": "object",
            "properties": {
                "events": {"type": "array", "items": parts.ref("Event")},
                "last_event_id": {
                    "type": "string",
                    "maxLength": MAX_CURSOR_CHARS,
                    "description": "An opaque cursor: pass it as last_event_id in the next "
                    "poll.",
                },
            },
            "required": ["events", "last_event_id"],
            "additionalProperties": False,
            "examples": [{
                "events": [{"event_id": EXAMPLE_CURSOR, "type": "new_message",
                            "message": {"chat_id": parts.EXAMPLE_CHAT_ID, "seq": 7}}],
                "last_event_id": EXAMPLE_CURSOR,
            }],
        },
    }


def _cursor_param(description: str) -> dict[str, Any]:
    return {
        "name": "last_event_id",
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "maxLength": MAX_CURSOR_CHARS, "pattern": CURSOR_PATTERN},
    }


def realtime_paths(settings: Settings) -> dict[str, Any]:
    no_content = {"204": {"description": "Done."}}
    return {
        "/ws": {
            "get": parts.operation(
                "openWebSocket",
                "realtime",
                "Open the user's WebSocket session (frames: API_CONTRACT.md §8)",
                {
                    "101": {"description": "Switching Protocols: the session is open."},
                    **parts.error_responses(
                        "websocket_required", *parts.AUTH_ERRORS, "origin_not_allowed",
                        "validation_error", "too_many_sessions", *parts.SERVER_ERRORS,
                        field="last_event_id",
                    ),
                },
                auth=False,
                description="Checks, in order: a WebSocket upgrade (400), the access token "
                "in `token` (401), the `Origin` (403), `last_event_id` (422), the user's "
                "session count (429).",
                parameters=[
                    {
                        "name": "token",
                        "in": "query",
                        "required": True,
                        "description": "An access token (redacted from logs).",
                        "schema": {"type": "string"},
                    },
                    _cursor_param("Resume after this cursor (the last event_id received; opaque)."),
                ],
            )
        },
        "/api/events": {
            "get": parts.operation(
                "pollEvents",
                "realtime",
                "Long-poll the user's event stream",
                {
                    "200": parts.ok("Events after last_event_id (possibly none).",
                                    parts.ref("EventBatch")),
                    **parts.error_responses(
                        *parts.AUTH_ERRORS, "validation_error", *parts.SERVER_ERRORS,
                        field="timeout",
                    ),
                },
                description="Answers at once when events are waiting, else when one arrives or "
                "`timeout` passes. Without last_event_id: at once, with the current cursor.",
                parameters=[
                    _cursor_param("The cursor this client has: the last `event_id` or "
                                  "`last_event_id` it received (opaque)."),
                    {
                        "name": "timeout",
                        "in": "query",
                        "required": False,
                        "description": "Seconds to wait (POLL_TIMEOUT_DEFAULT_SECONDS, "
                        "POLL_TIMEOUT_MAX_SECONDS).",
                        "schema": {"type": "number", "minimum": 0,
                                   "maximum": settings.poll_timeout_max,
                                   "default": settings.poll_timeout_default},
                    },
                ],
            )
        },
        "/api/chats/{chat_id}/typing": {
            "post": parts.operation(
                "setTyping",
                "realtime",
                "Start or stop typing in a chat (for polling clients)",
                {
                    **no_content,
                    **parts.error_responses(
                        *parts.AUTH_ERRORS, *parts.BODY_ERRORS, "chat_not_found",
                        *parts.SERVER_ERRORS, field="is_typing",
                    ),
                },
                description="The other members get a `typing` event; typing expires after "
                "TYPING_TTL_SECONDS without a new start.",
                parameters=[parts.path_param("chat_id", "The chat.")],
                request_body=parts.json_body(
                    parts.request_object({"is_typing": {"type": "boolean"}}, ["is_typing"]),
                    {"is_typing": True},
                ),
            )
        },
    }
