"""The users-and-sessions part of the OpenAPI document: the caller's own record and its edit,
finding people (by exact email, by name among the caller's contacts), and logging out
(API_CONTRACT.md §2 rule 6, §4).

Kept apart from ``api_spec`` like the other parts; ``build_spec`` merges these paths and schemas.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from messenger import api_spec_parts as parts
from messenger.email_lookups import EMAIL_LOOKUP_LIMIT
from messenger.validation import SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX, SEARCH_QUERY_MAX


def _public_user(display_name: str, user_id: str) -> dict[str, Any]:
    return {"id": user_id, "display_name": display_name, "created_at": parts.EXAMPLE_TIME}


def user_schemas() -> dict[str, Any]:
    return {
        "UserList": parts.object_schema(
            {
                "users": {
                    "type": "array",
                    "items": parts.ref("User"),
                    "maxItems": SEARCH_LIMIT_MAX,
                    "description": "By email: 0 or 1 entries. By name: the caller's contacts "
                    "whose name matches, by caseless name then id.",
                }
            },
            description="Who `GET /api/users` found (public records, no email).",
            examples=[{"users": [_public_user("Anna", parts.EXAMPLE_OTHER_ID)]}],
        ),
    }


def _refresh_token_body() -> dict[str, Any]:
    return parts.json_body(
        parts.request_object(
            {
                "refresh_token": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": parts.REFRESH_TOKEN_MAX,
                    "description": "Any refresh token of the session's family, live or spent.",
                }
            },
            ["refresh_token"],
        ),
        {"refresh_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."},
    )


def _query_param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def user_paths(settings: Settings) -> dict[str, Any]:
    lookups, seconds = EMAIL_LOOKUP_LIMIT
    return {
        "/api/auth/logout": {
            "post": parts.operation(
                "logout",
                "auth",
                "End one session: revoke its refresh-token family",
                {
                    "204": {"description": "The token's family is revoked (also when it was "
                            "already: a repeated logout answers 204 again). No body."},
                    **parts.error_responses(
                        *parts.BODY_ERRORS, "invalid_token", "rate_limited",
                        *parts.SERVER_ERRORS, field="refresh_token",
                    ),
                },
                auth=False,
                description="No bearer token needed (an Authorization header is ignored). The "
                "token is checked as at refresh: anything not a validly signed, unexpired "
                "refresh token of this server answers 401 `invalid_token` and revokes "
                "nothing. Afterwards every token of the family answers 401 `invalid_token` at "
                "refresh; access tokens issued before stay valid until their `exp`."
                + parts.limits_note(
                    ("AUTH_LIMIT_REFRESH_PER_IP", settings.auth_limit_refresh_per_ip,
                     "refreshes and logouts together per client address"),
                    ("AUTH_LIMIT_REFRESH_PER_ACCOUNT", settings.auth_limit_refresh_per_account,
                     "per account"),
                ),
                request_body=_refresh_token_body(),
            )
        },
        "/api/auth/logout-all": {
            "post": parts.operation(
                "logoutAll",
                "auth",
                "End every session of the caller",
                {
                    "204": {"description": "Every refresh-token family of the caller is "
                            "revoked, this session's included. No body."},
                    **parts.error_responses(*parts.AUTH_ERRORS, *parts.SERVER_ERRORS),
                },
                description="No body. A login afterwards starts a new family. Access tokens "
                "issued before stay valid until their `exp` (at most ACCESS_TOKEN_TTL_SECONDS, "
                f"default {settings.access_token_ttl} s).",
            )
        },
        "/api/users": {
            "get": parts.operation(
                "findUsers",
                "users",
                "Find people: by exact email, or by name among the caller's contacts",
                {
                    "200": parts.ok(
                        "Who was found; a miss is an empty list (never 404).",
                        parts.ref("UserList"),
                    ),
                    **parts.error_responses(
                        *parts.AUTH_ERRORS, "validation_error", "rate_limited",
                        *parts.SERVER_ERRORS, field="q",
                    ),
                },
                description="Exactly one of `email` and `q` (neither or both: 422 field q). "
                "Privacy rule: anyone can be found by their exact email, but a name search "
                "finds only users who share a chat with the caller (the caller excluded), so "
                f"strangers cannot be enumerated. Email lookups: at most {lookups} per "
                f"{seconds:g} s per caller (429 `rate_limited` with Retry-After), checked "
                "after the query checks and before the database.",
                parameters=[
                    _query_param(
                        "email",
                        "Exact lookup: trimmed and lower-cased as at register; invalid -> 422 "
                        "field email. 0 or 1 users.",
                        parts.email(),
                    ),
                    _query_param(
                        "q",
                        "Display-name prefix, as given (not trimmed), matched in Unicode "
                        "caseless form (NFKC, then full case folding). Results are ordered by "
                        "that form, then id.",
                        {"type": "string", "minLength": 1, "maxLength": SEARCH_QUERY_MAX},
                    ),
                    _query_param(
                        "limit",
                        "Most users a search answers; out of range -> 422 field limit.",
                        {"type": "integer", "minimum": 1, "maximum": SEARCH_LIMIT_MAX,
                         "default": SEARCH_LIMIT_DEFAULT},
                    ),
                ],
            )
        },
        "/api/users/me": {
            "get": parts.operation(
                "getMe",
                "users",
                "The caller's own record",
                {
                    "200": parts.ok("The caller.", parts.ref("UserWithEmail")),
                    **parts.error_responses(*parts.AUTH_ERRORS, *parts.SERVER_ERRORS),
                },
            ),
            "patch": parts.operation(
                "updateMe",
                "users",
                "Edit the caller's own profile",
                {
                    "200": parts.ok("The caller now.", parts.ref("UserWithEmail")),
                    **parts.error_responses(
                        *parts.AUTH_ERRORS, *parts.BODY_ERRORS, *parts.SERVER_ERRORS,
                        field="display_name",
                    ),
                },
                description="At least one known field (none given, e.g. `{}`: 422 field "
                "body); unknown keys are ignored. Chats and messages keep user ids only, so "
                "nothing else changes; no event announces the change.",
                request_body=parts.json_body(
                    parts.request_object(
                        {
                            "display_name": parts.nullable(parts.display_name(
                                "As at register: trimmed; 1..64 characters after trimming, "
                                "no control characters."
                            )),
                        },
                        [],
                    ),
                    {"display_name": "Ann B."},
                ),
            ),
        },
    }
