"""Chats and messages as the REST API sees them: membership checks, creation rules, history.

A chat is visible only to its members; to anyone else it does not exist (404 ``chat_not_found``),
so chat ids cannot be probed. The send path goes through ``Store.append_messages``; the real-time
layer will put a per-chat actor in front of it without changing these rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from messenger.errors import ChatNotFound, ValidationFailed
from messenger.ids import direct_key, is_valid_id
from messenger.models import AppendResult, Chat, ChatType, ChatView, Message, MessageDraft
from messenger.store import Store


@dataclass(frozen=True, slots=True)
class ReadState:
    chat_id: str
    seq: int
    unread_count: int

    def to_json(self) -> dict[str, object]:
        return {"chat_id": self.chat_id, "seq": self.seq, "unread_count": self.unread_count}


class ChatService:
    def __init__(self, store: Store, *, max_group_members: int, max_chats_listed: int) -> None:
        self._store = store
        self._max_group_members = max_group_members
        self._max_chats_listed = max_chats_listed

    async def create_chat(
        self, caller_id: str, chat_type: ChatType, member_ids: Sequence[str], title: str | None
    ) -> tuple[ChatView, bool]:
        members = list(dict.fromkeys([caller_id, *member_ids]))
        key = None
        if chat_type is ChatType.DIRECT:
            if len(members) != 2:
                raise ValidationFailed(
                    "member_ids", "a direct chat has exactly one other member"
                )
            if title is not None:
                raise ValidationFailed("title", "a direct chat has no title")
            key = direct_key(*members)
        elif len(members) > self._max_group_members:
            raise ValidationFailed(
                "member_ids", f"a group has at most {self._max_group_members} members"
            )
        others = [m for m in members if m != caller_id]
        found = {user.id for user in await self._store.get_users(others)}
        if missing := [m for m in others if m not in found]:
            raise ValidationFailed(
                "member_ids", f"unknown users: {', '.join(missing)}", code="unknown_members"
            )
        chat, created = await self._store.create_chat(chat_type, members, title, key)
        view = await self._store.get_chat_view(chat.id, caller_id)
        return (view or ChatView(chat, None, 0)), created

    async def list_chats(self, caller_id: str) -> list[ChatView]:
        return await self._store.list_chat_views(caller_id, self._max_chats_listed)

    async def get_chat_view(self, caller_id: str, chat_id: str) -> ChatView:
        view = await self._store.get_chat_view(chat_id, caller_id) if is_valid_id(chat_id) else None
        if view is None or not view.chat.is_member(caller_id):
            raise ChatNotFound("chat not found")
        return view

    async def member_chat(self, caller_id: str, chat_id: str) -> Chat:
        chat = await self._store.get_chat(chat_id) if is_valid_id(chat_id) else None
        if chat is None or not chat.is_member(caller_id):
            raise ChatNotFound("chat not found")
        return chat

    async def mark_read(self, caller_id: str, chat_id: str, seq: int) -> ReadState:
        chat = await self.member_chat(caller_id, chat_id)
        position = await self._store.mark_read(chat.id, caller_id, seq)
        # last_seq may have grown meanwhile; unread never goes negative.
        return ReadState(chat.id, position, max(0, chat.last_seq - position))

    async def history(
        self, caller_id: str, chat_id: str, before_id: str | None, limit: int
    ) -> tuple[list[Message], bool]:
        chat = await self.member_chat(caller_id, chat_id)
        before_seq = None
        if before_id is not None:
            anchor = await self._store.get_message(chat.id, before_id) if is_valid_id(
                before_id
            ) else None
            if anchor is None:
                raise ValidationFailed("before_id", "before_id is not a message of this chat")
            before_seq = anchor.seq
        return await self._store.list_messages(chat.id, before_seq, limit)

    async def send(
        self, caller_id: str, chat_id: str, text: str, client_msg_id: str | None
    ) -> AppendResult:
        chat = await self.member_chat(caller_id, chat_id)
        [result] = await self._store.append_messages(
            chat.id, [MessageDraft(caller_id, text, client_msg_id)]
        )
        return result
