"""GET and PATCH /api/users/me, GET /api/users/{user_id}, and finding people:
GET /api/users?email=… (exact, anyone) or ?q=… (name prefix, the caller's contacts only)."""

from __future__ import annotations

from handlers.base import BaseHandler
from messenger import validation
from messenger.errors import InvalidToken, UserNotFound, ValidationFailed


class MeHandler(BaseHandler):
    async def get(self) -> None:
        try:
            user = await self.services.accounts.get_user(self.user_id)
        except UserNotFound:
            raise InvalidToken("the account of this token no longer exists") from None
        self.send_json(user.to_json(include_email=True))

    async def patch(self) -> None:
        body = self.json_body()
        display_name = validation.optional_display_name(body)
        if display_name is None:
            raise ValidationFailed("body", "give at least one field to change: display_name")
        try:
            user = await self.services.accounts.rename(self.user_id, display_name)
        except UserNotFound:
            raise InvalidToken("the account of this token no longer exists") from None
        self.send_json(user.to_json(include_email=True))


class UserHandler(BaseHandler):
    async def get(self, user_id: str) -> None:
        user = await self.services.accounts.get_user(user_id)
        self.send_json(user.to_json())


class UsersHandler(BaseHandler):
    """Exactly one of ``email`` and ``q`` (a parameter present but empty counts as given)."""

    async def get(self) -> None:
        email = self.get_query_argument("email", None, strip=False)
        prefix = self.get_query_argument("q", None, strip=False)
        if (email is None) == (prefix is None):
            raise ValidationFailed("q", "give exactly one of email and q")
        limit = validation.query_int(
            self.get_query_argument("limit", None),
            "limit",
            default=validation.SEARCH_LIMIT_DEFAULT,
            minimum=1,
            maximum=validation.SEARCH_LIMIT_MAX,
        )
        accounts = self.services.accounts
        if email is not None:
            users = await accounts.find_by_email(self.user_id, validation.query_email(email))
        else:
            assert prefix is not None
            users = await accounts.search(self.user_id, validation.search_prefix(prefix), limit)
        self.send_json({"users": [user.to_json() for user in users]})
