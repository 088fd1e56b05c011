"""The email part of the OpenAPI document: verification, password reset, and the two pages the
emailed links open (API_CONTRACT.md §10).

Kept apart from ``api_spec`` like the real-time part; ``build_spec`` merges these paths and
schemas. Digests and the outbox have no endpoint: they are described in API_CONTRACT.md §10.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from messenger import api_spec_parts as parts

#: Longest token accepted in a body (issued tokens are 43 characters).
EMAIL_TOKEN_MAX = 256


def email_schemas() -> dict[str, Any]:
    return {
        "Status": parts.object_schema(
            {"status": {"type": "string"}},
            description="A one-word outcome.",
            examples=[{"status": "queued"}],
        ),
    }


def _token() -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": EMAIL_TOKEN_MAX,
        "description": "The token from the emailed link (after `#token=`).",
    }


def _status(description: str, value: str) -> dict[str, Any]:
    return parts.ok(description, parts.ref("Status"), {"status": value})


def _page(operation_id: str, summary: str, description: str) -> dict[str, Any]:
    return parts.operation(
        operation_id,
        "email",
        summary,
        {
            "200": {
                "description": "The page (static; it reads the token from the URL fragment).",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
        auth=False,
        description=description,
    )


def email_paths(settings: Settings) -> dict[str, Any]:
    password = parts.password(
        parts.PASSWORD_MIN_CHARS,
        f"The new password: at least {parts.PASSWORD_MIN_CHARS} characters and at most "
        f"{parts.PASSWORD_MAX_BYTES} bytes in UTF-8.",
    )
    return {
        "/api/auth/verify": {
            "post": parts.operation(
                "verifyEmail",
                "email",
                "Verify the account's email with the emailed token",
                {
                    "200": parts.ok("Verified; the caller's record.", parts.ref("UserWithEmail")),
                    **parts.error_responses(
                        "invalid_email_token", *parts.BODY_ERRORS, *parts.SERVER_ERRORS,
                        field="token",
                    ),
                },
                auth=False,
                description="The token works once, until EMAIL_VERIFY_TOKEN_TTL_SECONDS "
                f"(default {settings.email_verify_token_ttl}) after it was sent.",
                request_body=parts.json_body(
                    parts.request_object({"token": _token()}, ["token"]),
                    {"token": "mB0nQ0x4Yv7yQ2o1JfY0b1i5m8N2b6cXnV3aQk9dEwE"},
                ),
            )
        },
        "/api/auth/verify/resend": {
            "post": parts.operation(
                "resendVerification",
                "email",
                "Send the verification email again",
                {
                    "202": _status("A new verification email is queued.", "queued"),
                    **parts.error_responses(
                        *parts.AUTH_ERRORS, "email_already_verified", "resend_too_soon",
                        "rate_limited", *parts.SERVER_ERRORS,
                    ),
                },
                description="At most one verification email per account per "
                "EMAIL_RESEND_INTERVAL_SECONDS (default "
                f"{settings.email_resend_interval:g}); a 429 carries Retry-After."
                + parts.limits_note(
                    ("AUTH_LIMIT_RESEND_PER_IP", settings.auth_limit_resend_per_ip,
                     "requests per client address"),
                    ("AUTH_LIMIT_RESEND_PER_ACCOUNT", settings.auth_limit_resend_per_account,
                     "per account"),
                ),
            )
        },
        "/api/auth/password-reset/request": {
            "post": parts.operation(
                "requestPasswordReset",
                "email",
                "Ask for a password-reset email",
                {
                    "202": _status(
                        "Always, whether or not an account has this email.", "accepted"
                    ),
                    **parts.error_responses(
                        *parts.BODY_ERRORS, "rate_limited", *parts.SERVER_ERRORS, field="email"
                    ),
                },
                auth=False,
                description="Answered before the account is looked up, so neither the answer "
                "nor its timing tells whether the email has an account."
                + parts.limits_note(
                    ("AUTH_LIMIT_RESET_PER_IP", settings.auth_limit_reset_per_ip,
                     "requests per client address"),
                    ("AUTH_LIMIT_RESET_PER_EMAIL", settings.auth_limit_reset_per_email,
                     "per email, whether or not an account has it"),
                ),
                request_body=parts.json_body(
                    parts.request_object({"email": parts.email()}, ["email"]),
                    {"email": "ann@example.com"},
                ),
            )
        },
        "/api/auth/password-reset/confirm": {
            "post": parts.operation(
                "confirmPasswordReset",
                "email",
                "Set a new password with the emailed token",
                {
                    "200": _status(
                        "The password is changed and every refresh token of the account is "
                        "revoked.",
                        "password_changed",
                    ),
                    **parts.error_responses(
                        "invalid_email_token", *parts.BODY_ERRORS, "rate_limited",
                        *parts.SERVER_ERRORS, field="password",
                    ),
                },
                auth=False,
                description="The token works once, until PASSWORD_RESET_TOKEN_TTL_SECONDS "
                f"(default {settings.password_reset_token_ttl}) after it was sent. The email "
                "counts as verified afterwards."
                + parts.limits_note(
                    ("AUTH_LIMIT_RESET_CONFIRM_PER_IP", settings.auth_limit_reset_confirm_per_ip,
                     "attempts per client address"),
                ),
                request_body=parts.json_body(
                    parts.request_object(
                        {"token": _token(), "password": password}, ["token", "password"]
                    ),
                    {"token": "mB0nQ0x4Yv7yQ2o1JfY0b1i5m8N2b6cXnV3aQk9dEwE",
                     "password": "a new correct horse"},
                ),
            )
        },
        "/verify-email": {
            "get": _page(
                "verifyEmailPage",
                "The page the verification link opens",
                "Reads `#token=...` and, when the person confirms, posts it to "
                "/api/auth/verify.",
            )
        },
        "/reset-password": {
            "get": _page(
                "resetPasswordPage",
                "The page the password-reset link opens",
                "Reads `#token=...`, asks for the new password and posts both to "
                "/api/auth/password-reset/confirm.",
            )
        },
    }
