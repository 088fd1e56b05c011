"""Chats: create and list, one chat, read position."""

from __future__ import annotations

from handlers.base import BaseHandler
from messenger import validation
from messenger.models import ChatType


class ChatsHandler(BaseHandler):
    async def get(self) -> None:
        views = await self.services.chats.list_chats(self.user_id)
        self.send_json({"chats": [view.to_json() for view in views]})

    async def post(self) -> None:
        body = self.json_body()
        chat_type = ChatType(validation.choice(body, "type", tuple(t.value for t in ChatType)))
        limit = self.services.settings.max_group_members
        member_ids = validation.id_list(body, "member_ids", max_items=limit)
        title = validation.string(
            body, "title", max_len=validation.TITLE_MAX, required=False, strip=True
        )
        view, created = await self.services.chats.create_chat(
            self.user_id, chat_type, member_ids, title
        )
        self.send_json(view.to_json(), status=201 if created else 200)


class ChatHandler(BaseHandler):
    async def get(self, chat_id: str) -> None:
        view = await self.services.chats.get_chat_view(self.user_id, chat_id)
        self.send_json(view.to_json())


class ChatReadHandler(BaseHandler):
    async def post(self, chat_id: str) -> None:
        body = self.json_body()
        seq = validation.integer(body, "seq", minimum=0)
        state = await self.services.realtime.mark_read(self.user_id, chat_id, seq)
        self.send_json({"chat_id": state.chat_id, "seq": state.seq,
                        "unread_count": state.unread_count})
