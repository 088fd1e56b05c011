"""``POST /api/chats/{chat_id}/typing`` ``{"is_typing": bool}``: typing for polling clients."""

from __future__ import annotations

from handlers.base import BaseHandler
from messenger import validation


class TypingHandler(BaseHandler):
    async def post(self, chat_id: str) -> None:
        body = self.json_body()
        is_typing = validation.boolean(body, "is_typing")
        await self.services.realtime.set_typing(self.user_id, chat_id, is_typing)
        self.set_status(204)
        self.finish()
