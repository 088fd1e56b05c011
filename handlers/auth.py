"""POST /api/auth/register, /login, /refresh."""

from __future__ import annotations

from handlers.base import BaseHandler
from messenger import validation


class RegisterHandler(BaseHandler):
    requires_auth = False

    async def post(self) -> None:
        body = self.json_body()
        email = validation.email(body)
        password = validation.password(body)
        name = validation.display_name(body)
        session = await self.services.accounts.register(email, password, name)
        await self.services.email.send_verification(session.user)
        self.send_json(session.to_json(), status=201)


class LoginHandler(BaseHandler):
    requires_auth = False

    async def post(self) -> None:
        body = self.json_body()
        email = validation.email(body)
        password = validation.password(body, check_strength=False)
        session = await self.services.accounts.login(email, password)
        self.send_json(session.to_json())


class RefreshHandler(BaseHandler):
    requires_auth = False

    async def post(self) -> None:
        body = self.json_body()
        token = validation.string(body, "refresh_token", max_len=4096)
        assert token is not None
        session = await self.services.accounts.refresh(token)
        self.send_json(session.to_json())
