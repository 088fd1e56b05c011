"""The storage interface. Two adapters implement it: MongoDB via Motor and embedded SQLite.

Nothing outside ``messenger.store`` knows which adapter is in use; both pass
``tests/test_store_contract.py``. Semantics every adapter guarantees:

* Emails are unique (``EmailTaken``); callers pass them already normalised.
* Refresh tokens rotate: ``spend_refresh_token`` spends a live token exactly once, even when
  called concurrently; a second spend reports ``REUSED``; tokens of a revoked family report
  ``REVOKED``.
* A direct chat is unique per unordered pair of users (``direct_key``).
* ``append_messages`` gives each new message the next per-chat ``seq`` (1, 2, 3, … with no gaps
  and no duplicates under concurrent callers in one process), is idempotent per
  ``(chat_id, sender_id, client_msg_id)``, moves the chat's ``last_activity_at``, and moves each
  sender's read position up to its own message.
* Read positions only move forward and never past ``last_seq``.
* Adapters use no multi-document transactions on MongoDB: single-document atomic updates, unique
  indexes and idempotent retries.
* Expired refresh tokens report ``UNKNOWN`` (and are purged in the background: TTL indexes on
  MongoDB, a periodic delete on SQLite).
* ``get_chat`` returns ``member_ids`` in the order ``create_chat`` was given them.
* ``append_messages`` to a chat that does not exist raises ``StoreError`` (callers check the chat
  first); a malformed id that would have to be stored raises ``StoreError``, while a malformed id
  in a read simply finds nothing.
* The database not answering, and any call after ``close()``, raise ``StoreUnavailable``;
  ``close()`` twice is harmless.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime

from messenger.models import (
    AppendResult,
    Chat,
    ChatType,
    ChatView,
    Message,
    MessageDraft,
    SpendResult,
    User,
)


class Store(abc.ABC):
    """Async storage for users, refresh-token families, chats, read positions and messages."""

    #: Short name of the backing dependency, used by readiness checks ("mongodb", "sqlite").
    backend: str

    # -- lifecycle ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def migrate(self) -> None:
        """Create or upgrade schema and indexes. Idempotent; run on start and by scripts/migrate."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` if the database does not answer."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads. The store is unusable afterwards."""

    # -- users -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_user(self, email: str, password_hash: bytes, display_name: str) -> User:
        """Insert a user; raise ``EmailTaken`` if the email exists."""

    @abc.abstractmethod
    async def get_user(self, user_id: str) -> User | None: ...

    @abc.abstractmethod
    async def get_user_by_email(self, email: str) -> User | None: ...

    @abc.abstractmethod
    async def get_users(self, user_ids: Sequence[str]) -> list[User]:
        """The users that exist among ``user_ids`` (any order, no duplicates)."""

    # -- refresh tokens ----------------------------------------------------------------------
    @abc.abstractmethod
    async def add_refresh_token(
        self, jti: str, family_id: str, user_id: str, expires_at: datetime
    ) -> None:
        """Record a live refresh token. A new ``family_id`` starts a new family."""

    @abc.abstractmethod
    async def spend_refresh_token(self, jti: str) -> SpendResult:
        """Atomically spend a live token. See ``RefreshSpend`` for the outcomes."""

    @abc.abstractmethod
    async def revoke_token_family(self, family_id: str) -> None:
        """Revoke every token of a family, spent or not (reuse detection)."""

    @abc.abstractmethod
    async def revoke_user_tokens(self, user_id: str) -> None:
        """Revoke every refresh-token family of a user (password change, logout everywhere)."""

    # -- chats -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_chat(
        self,
        chat_type: ChatType,
        member_ids: Sequence[str],
        title: str | None,
        direct_key: str | None,
    ) -> tuple[Chat, bool]:
        """Create a chat; for a ``direct_key`` that exists, return that chat and ``False``."""

    @abc.abstractmethod
    async def get_chat(self, chat_id: str) -> Chat | None: ...

    @abc.abstractmethod
    async def get_chat_view(self, chat_id: str, user_id: str) -> ChatView | None:
        """The chat with its last message and ``user_id``'s read position (None if no chat)."""

    @abc.abstractmethod
    async def list_chat_views(self, user_id: str, limit: int) -> list[ChatView]:
        """Chats where ``user_id`` is a member, most recent activity first (ties: newest id)."""

    @abc.abstractmethod
    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int:
        """Move the read position forward to ``min(seq, last_seq)``; return the position now."""

    # -- messages ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def append_messages(
        self, chat_id: str, drafts: Sequence[MessageDraft]
    ) -> list[AppendResult]:
        """Append a batch to one existing chat; one result per draft, in order.

        Drafts whose ``(sender_id, client_msg_id)`` was stored before (or repeats earlier in the
        batch) return the original message with ``created=False`` and take no ``seq``.
        """

    @abc.abstractmethod
    async def get_message(self, chat_id: str, message_id: str) -> Message | None: ...

    @abc.abstractmethod
    async def list_messages(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Up to ``limit`` messages with ``seq < before_seq`` (or the newest), oldest first,
        and whether older ones exist."""
