"""Chats and messages as the REST API sees them: membership checks, creation rules, history.

A chat is visible only to its members; to anyone else it does not exist (404 ``chat_not_found``),
so chat ids cannot be probed. Sends and reads go through the chat's actor (``actors/chat.py``),
which applies the same membership rule from its member cache; this service checks the
attachments a send may carry and tells the real-time layer (its notifier) about chat changes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Protocol

from messenger.errors import ChatNotFound, Forbidden, NotAGroup, ValidationFailed
from messenger.ids import direct_key, is_valid_id
from messenger.models import (
    Attachment,
    Chat,
    ChatType,
    ChatView,
)
from messenger.store import Store

if TYPE_CHECKING:
    from messenger.attachments import AttachmentService

log = logging.getLogger("messenger.chats")


class ChatNotifier(Protocol):
    """Told about chat changes after they are stored (the real-time layer publishes events).

    ``chat`` is the chat as stored after the change (with all its members now).
    """

    async def chat_created(self, chat: Chat) -> None: ...

    async def members_added(self, chat: Chat, user_ids: list[str], by: str) -> None: ...

    async def member_removed(self, chat: Chat, user_id: str, by: str) -> None: ...


class NullNotifier:
    """The default ``ChatNotifier``: tells nobody."""

    async def chat_created(self, chat: Chat) -> None:
        return None

    async def members_added(self, chat: Chat, user_ids: list[str], by: str) -> None:
        return None

    async def member_removed(self, chat: Chat, user_id: str, by: str) -> None:
        return None


class ChatService:
    def __init__(
        self,
        store: Store,
        *,
        max_group_members: int,
        max_chats_listed: int,
        attachments: AttachmentService | None = None,
        notifier: ChatNotifier | None = None,
    ) -> None:
        self._store = store
        self._max_group_members = max_group_members
        self._max_chats_listed = max_chats_listed
        self._attachments = attachments
        self._notifier: ChatNotifier = notifier or NullNotifier()

    def set_notifier(self, notifier: ChatNotifier | None) -> None:
        """Plug in (None: unplug) whoever publishes chat changes (the real-time hub)."""
        self._notifier = notifier or NullNotifier()

    async def _notify(self, what: str, call: Awaitable[None]) -> None:
        """Await a notifier call. The change is stored already, so a failure to publish it is
        logged and the request still succeeds (clients catch up over REST)."""
        try:
            await call
        except Exception:
            log.exception("publishing %s failed", what)

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
        if created:
            await self._notify("chat_created", self._notifier.chat_created(chat))
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

    async def add_members(
        self, caller_id: str, chat_id: str, user_ids: Sequence[str]
    ) -> ChatView:
        """Any member adds users to a group; existing members and repeats are ignored.

        Checks, in order: 404 not a member; 422 ``not_a_group``; 422 ``validation_error``
        (``user_ids``) past ``MAX_GROUP_MEMBERS``; 422 ``unknown_members`` (``user_ids``).
        """
        chat = await self.member_chat(caller_id, chat_id)
        if chat.type is not ChatType.GROUP:
            raise NotAGroup("a direct chat's members cannot change")
        new = [u for u in dict.fromkeys(user_ids) if not chat.is_member(u)]
        if len(chat.member_ids) + len(new) > self._max_group_members:
            raise ValidationFailed(
                "user_ids", f"a group has at most {self._max_group_members} members"
            )
        found = {user.id for user in await self._store.get_users(new)}
        if missing := [u for u in new if u not in found]:
            raise ValidationFailed(
                "user_ids", f"unknown users: {', '.join(missing)}", code="unknown_members"
            )
        if new:
            before = set(chat.member_ids)
            chat = await self._store.add_members(chat.id, new)
            # Only those this call really added (a concurrent add may have won some).
            added = [u for u in chat.member_ids if u in set(new) and u not in before]
            if added:
                await self._notify(
                    "members_added", self._notifier.members_added(chat, added, caller_id)
                )
        view = await self._store.get_chat_view(chat.id, caller_id)
        return view or ChatView(chat, None, 0)

    async def leave(self, caller_id: str, chat_id: str, user_id: str) -> None:
        """A member removes ``user_id`` from a group: only themselves (leaving).

        Checks, in order: 404 not a member; 422 ``not_a_group``; 403 ``forbidden`` (another
        user).
        """
        chat = await self.member_chat(caller_id, chat_id)
        if chat.type is not ChatType.GROUP:
            raise NotAGroup("a direct chat cannot be left")
        if user_id != caller_id:
            raise Forbidden("members may only remove themselves")
        chat = await self._store.remove_member(chat.id, user_id)
        await self._notify(
            "member_removed", self._notifier.member_removed(chat, user_id, caller_id)
        )

    async def history_json(
        self, caller_id: str, chat_id: str, before_id: str | None, limit: int
    ) -> tuple[list[bytes], bool]:
        """A page of history (``Store.list_messages``'s), each message as its encoded API
        JSON. The page query checks membership itself; only an empty page (or a ``before_id``)
        costs the full check, so a non-member still gets 404 before any 422."""
        if not is_valid_id(chat_id):
            raise ChatNotFound("chat not found")
        before_seq = None
        if before_id is not None:
            await self.member_chat(caller_id, chat_id)
            anchor = await self._store.get_message(chat_id, before_id) if is_valid_id(
                before_id
            ) else None
            if anchor is None:
                raise ValidationFailed("before_id", "before_id is not a message of this chat")
            before_seq = anchor.seq
        page, more = await self._store.list_messages_json(chat_id, before_seq, limit, caller_id)
        if not page and before_id is None:
            await self.member_chat(caller_id, chat_id)  # empty, or not theirs: 404
        return page, more

    async def claim_attachments(
        self,
        sender_id: str,
        attachment_ids: Sequence[str],
        *,
        chat_id: str | None = None,
        client_msg_id: str | None = None,
    ) -> tuple[Attachment, ...]:
        """``AttachmentService.claim``: the attachments a send of ``sender_id`` may carry."""
        if not attachment_ids:
            return ()
        if self._attachments is None:
            raise ValidationFailed("attachment_ids", "attachments are not enabled")
        return await self._attachments.claim(
            sender_id, attachment_ids, chat_id=chat_id, client_msg_id=client_msg_id
        )
