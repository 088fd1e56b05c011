"""Group membership: add members, leave (API_CONTRACT.md §4)."""

from __future__ import annotations

from handlers.base import BaseHandler
from messenger import validation
from messenger.errors import ValidationFailed


class ChatMembersHandler(BaseHandler):
    async def post(self, chat_id: str) -> None:
        """``POST /api/chats/{chat_id}/members`` ``{"user_ids": [...]}`` -> 200 ``ChatView``."""
        body = self.json_body()
        limit = self.services.settings.max_group_members
        user_ids = validation.id_list(body, "user_ids", max_items=limit)
        if not user_ids:
            raise ValidationFailed("user_ids", "user_ids must name at least one user")
        view = await self.services.chats.add_members(self.user_id, chat_id, user_ids)
        self.send_json(view.to_json())


class ChatMemberHandler(BaseHandler):
    async def delete(self, chat_id: str, user_id: str) -> None:
        """``DELETE /api/chats/{chat_id}/members/{user_id}`` (the caller leaves) -> 204."""
        await self.services.chats.leave(self.user_id, chat_id, user_id)
        self.set_status(204)
        self.finish()
