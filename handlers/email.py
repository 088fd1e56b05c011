"""Email verification and password reset (API_CONTRACT.md §10), and the two small pages the
emailed links open.

The pages are static: a link carries its token in the URL fragment (``#token=…``), which
browsers never send to a server, and a few lines of inline script (allowed by its hash in the
Content-Security-Policy, nothing else is) post it to the JSON endpoints once the person confirms.
Loading a page changes nothing, so link scanners that fetch it do no harm. The endpoints are
rate-limited per client address and per account (``messenger.auth_limits``) after their field
checks and before any database or bcrypt work.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from handlers.base import BaseHandler
from messenger import validation
from messenger.errors import InvalidToken, UserNotFound

#: Longest token accepted (issued ones have 43 characters); ``api_spec_email`` says the same.
EMAIL_TOKEN_MAX = 256


def _token(body: dict[str, Any]) -> str:
    token = validation.string(body, "token", max_len=EMAIL_TOKEN_MAX, strip=True)
    assert token is not None
    return token


class VerifyEmailHandler(BaseHandler):
    requires_auth = False

    async def post(self) -> None:
        token = _token(self.json_body())
        user = await self.services.email.verify(token)
        self.send_json(user.to_json(include_email=True))


class ResendVerificationHandler(BaseHandler):
    async def post(self) -> None:
        self.services.auth_limits.resend(self.client_address, self.user_id)
        try:
            user = await self.services.accounts.get_user(self.user_id)
        except UserNotFound:
            raise InvalidToken("the account of this token no longer exists") from None
        await self.services.email.resend_verification(user)
        self.send_json({"status": "queued"}, status=202)


class PasswordResetRequestHandler(BaseHandler):
    requires_auth = False

    async def post(self) -> None:
        email = validation.email(self.json_body())
        self.services.auth_limits.reset_request(self.client_address, email)
        self.services.email.request_password_reset(email)
        self.send_json({"status": "accepted"}, status=202)


class PasswordResetConfirmHandler(BaseHandler):
    requires_auth = False

    async def post(self) -> None:
        body = self.json_body()
        token = _token(body)
        password = validation.password(body)
        self.services.auth_limits.reset_confirm(self.client_address)
        await self.services.email.confirm_password_reset(token, password)
        self.send_json({"status": "password_changed"})


# -- the pages ---------------------------------------------------------------------------------
_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem}"
    "input,button{font:inherit;padding:.4rem .6rem}input{width:100%;box-sizing:border-box}"
)

_SCRIPT = """
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const form = document.getElementById("form"), note = document.getElementById("note");
history.replaceState(null, "", location.pathname);
if (!token) {
  note.textContent = "This link has no code in it: open the link from the email again.";
  form.hidden = true;
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button");
  const body = {token};
  const password = form.querySelector("input");
  if (password) body.password = password.value;
  button.disabled = true;
  let answer = {};
  let response = null;
  try {
    response = await fetch(form.dataset.endpoint, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
    answer = await response.json();
  } catch (error) {
    answer = {error: {message: "The server could not be reached; try again."}};
  }
  if (response && response.ok) {
    note.textContent = form.dataset.done;
    form.hidden = true;
  } else {
    note.textContent = (answer.error && answer.error.message) || "Something went wrong.";
    button.disabled = false;
  }
});
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_CSP = (
    f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _page(title: str, intro: str, endpoint: str, done: str, fields: str, button: str) -> bytes:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{title}</h1><p id="note">{intro}</p>'
        f'<form id="form" data-endpoint="{endpoint}" data-done="{done}">{fields}'
        f"<p><button>{button}</button></p></form>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    ).encode()


VERIFY_PAGE = _page(
    "Confirm your email address",
    "Confirm that this email address is yours.",
    "/api/auth/verify",
    "Thank you: your email address is confirmed. You can close this page.",
    "",
    "Confirm my email address",
)
RESET_PAGE = _page(
    "Choose a new password",
    "Enter the new password for your account. Every session of the account is signed out.",
    "/api/auth/password-reset/confirm",
    "Your password is changed: log in with it now.",
    '<p><label>New password (at least 8 characters)<br><input type="password" '
    'name="password" minlength="8" required autocomplete="new-password"></label></p>',
    "Set the new password",
)


class _PageHandler(BaseHandler):
    requires_auth = False
    page: bytes = b""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", _CSP)
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")
        self.finish(self.page)


class VerifyEmailPage(_PageHandler):
    page = VERIFY_PAGE


class ResetPasswordPage(_PageHandler):
    page = RESET_PAGE
