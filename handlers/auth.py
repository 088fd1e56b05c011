"""POST /api/auth/register, /login, /refresh, /logout and /logout-all.

All but /logout-all are rate-limited per client address and per account
(``messenger.auth_limits``) after their field checks and before any bcrypt or database work;
/logout counts against refresh's limits (both are a signature check and one write on a token
family). /logout-all is a bearer endpoint like any other.
"""

from __future__ import annotations

from handlers.base import BaseHandler
from messenger import validation
from messenger.errors import InvalidCredentials


class RegisterHandler(BaseHandler):
    requires_auth = False

    async def post(self) -> None:
        body = self.json_body()
        email = validation.email(body)
        password = validation.password(body)
        name = validation.display_name(body)
        self.services.auth_limits.register(self.client_address, email)
        session = await self.services.accounts.register(email, password, name)
        self.services.known_users.remember(session.user.id)
        await self.services.email.send_verification(session.user)
        self.send_json(session.to_json(), status=201)


class LoginHandler(BaseHandler):
    requires_auth = False

    async def post(self) -> None:
        body = self.json_body()
        email = validation.email(body)
        password = validation.password(body, check_strength=False)
        limits = self.services.auth_limits
        limits.login(self.client_address, email)
        try:
            session = await self.services.accounts.login(email, password)
        except InvalidCredentials:
            limits.login_failed(email)
            raise
        self.services.known_users.remember(session.user.id)
        self.send_json(session.to_json())


class RefreshTokenHandler(BaseHandler):
    """A body ``{"refresh_token": str}``, under refresh's per-address limit (§2)."""

    requires_auth = False

    def refresh_token(self) -> str:
        token = validation.string(self.json_body(), "refresh_token", max_len=4096)
        assert token is not None
        self.services.auth_limits.refresh_from(self.client_address)
        return token


class RefreshHandler(RefreshTokenHandler):
    async def post(self) -> None:
        token = self.refresh_token()
        admit = self.services.auth_limits.refresh_of
        session = await self.services.accounts.refresh(token, admit=admit)
        self.send_json(session.to_json())


class LogoutHandler(RefreshTokenHandler):
    """Revoke the presented refresh token's family -> 204; no bearer token needed."""

    async def post(self) -> None:
        token = self.refresh_token()
        await self.services.accounts.logout(token, admit=self.services.auth_limits.refresh_of)
        self.set_status(204)
        self.finish()


class LogoutAllHandler(BaseHandler):
    """Revoke every refresh-token family of the caller -> 204 (a body is ignored)."""

    async def post(self) -> None:
        await self.services.accounts.logout_all(self.user_id)
        self.set_status(204)
        self.finish()
