"""GET (history, cursor pagination) and POST (send, idempotent) /api/chats/{chat_id}/messages."""

from __future__ import annotations

import orjson

from handlers.base import BaseHandler
from messenger import validation


class MessagesHandler(BaseHandler):
    async def get(self, chat_id: str) -> None:
        settings = self.services.settings
        limit = validation.query_int(
            self.get_query_argument("limit", None),
            "limit",
            default=settings.page_size_default,
            minimum=1,
            maximum=settings.page_size_max,
        )
        # Not stripped: an id with junk around it is malformed, as in a path or a body.
        before_id = self.get_query_argument("before_id", None, strip=False)
        messages, has_more = await self.services.chats.history_json(
            self.user_id, chat_id, before_id, limit
        )
        # the store encoded each message (Store.list_messages_json): embedded as they are
        self.send_json({"messages": orjson.Fragment(b"[%s]" % b",".join(messages)),
                        "has_more": has_more})

    async def post(self, chat_id: str) -> None:
        body = self.json_body()
        settings = self.services.settings
        attachment_ids = validation.attachment_ids(body, settings.max_attachments_per_message)
        text = validation.message_text(
            body, settings.max_message_length, optional=bool(attachment_ids)
        )
        client_msg_id = validation.client_msg_id(body)
        result = await self.services.realtime.send(
            self.user_id, chat_id, text, client_msg_id, attachment_ids=attachment_ids
        )
        self.send_json(result.message.to_json(), status=201 if result.created else 200)
