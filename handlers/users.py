"""GET /api/users/me and /api/users/{user_id}."""

from __future__ import annotations

from handlers.base import BaseHandler
from messenger.errors import InvalidToken, UserNotFound


class MeHandler(BaseHandler):
    async def get(self) -> None:
        try:
            user = await self.services.accounts.get_user(self.user_id)
        except UserNotFound:
            raise InvalidToken("the account of this token no longer exists") from None
        self.send_json(user.to_json(include_email=True))


class UserHandler(BaseHandler):
    async def get(self, user_id: str) -> None:
        user = await self.services.accounts.get_user(user_id)
        self.send_json(user.to_json())
