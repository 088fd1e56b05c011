"""The storage interface. Two adapters implement it: MongoDB via Motor and embedded SQLite.

Nothing outside ``messenger.store`` knows which adapter is in use; both pass
``tests/test_store_contract.py``. Semantics every adapter guarantees:

* Emails are unique (``EmailTaken``); callers pass them already normalised.
* Display names: each user's search key ``messenger.names.name_key(display_name)`` is stored
  with the name, written in the same statement (SQLite) or single-document write (MongoDB) as
  the name itself (``create_user``, ``set_display_name``); ``migrate`` gives users stored before
  keys existed theirs (SQLite: in the schema step that adds the column; MongoDB: every
  ``migrate`` fills the keys still missing, each only if the name is still the one it read).
  ``search_contacts(user, prefix, limit)`` is the users sharing at least one chat with ``user``
  now, ``user`` excluded, whose key starts with ``prefix`` (a key itself), ordered by (key, id),
  at most ``limit``. Its cost is bounded by ``user``'s contacts, never by the number of users.
* Refresh tokens rotate: ``spend_refresh_token`` spends a live token exactly once, even when
  called concurrently; a second spend reports ``REUSED``; tokens of a revoked family report
  ``REVOKED``.
* A direct chat is unique per unordered pair of users (``direct_key``).
* ``append_messages`` gives each new message the next per-chat ``seq`` (1, 2, 3, … with no gaps
  and no duplicates under concurrent callers in one process), is idempotent per
  ``(chat_id, sender_id, client_msg_id)``, moves the chat's ``last_activity_at``, and moves each
  sender's read position up to its own message.
  **The store is the last word on membership**: a new message whose sender is not a member of
  the chat at the moment of the write is refused (``SenderNotMember`` in its place, nothing
  stored, no ``seq`` taken) — checked atomically with the write (SQLite: in its transaction;
  MongoDB: in the same single-document update that takes the seqs), so a caller's stale member
  cache can never let a removed member send. A replay of a message stored while the sender was
  a member still returns that original.
* Read positions only move forward and never past ``last_seq``.
* Adapters use no multi-document transactions on MongoDB: single-document atomic updates, unique
  indexes and idempotent retries.
* Expired refresh tokens report ``UNKNOWN`` (and are purged in the background: TTL indexes on
  MongoDB, a periodic delete on SQLite).
* ``get_chat`` returns ``member_ids`` in join order: the order ``create_chat`` was given them,
  then each ``add_members`` call's new members in the order given (a member removed and added
  again goes to the end).
* ``add_members`` appends the given users that are not members yet (repeats and existing members
  are ignored) and ``remove_member`` removes one (a no-op when not a member); both return the
  chat as it is afterwards, are atomic on one chat and raise ``StoreError`` for a chat that does
  not exist. They check neither the chat type nor a member limit nor that the users exist
  (``ChatService`` does); read positions are kept.
* ``contact_ids(user)`` is every user sharing at least one chat with ``user``, without ``user``.
* Streams (docs/REALTIME_STREAMS.md): a stream key is ``u:<user id>`` or ``c:<chat id>``, the
  whole string; any other key raises ``StoreError`` in every stream method.
  ``append_stream(stream, payloads)`` stores the payloads as the stream's next entries and returns
  their offsets, increasing in batch order (consecutive unless another writer's entries land in
  between; on SQLite always consecutive). **Offsets have no holes and are never reused**: an
  offset is taken by the durable insert of its entry under a unique index on
  ``(stream, offset)``, nothing is reserved beforehand, and a writer that loses a race goes on
  after the entries that beat it (``StoreError`` after ``streams.APPEND_ATTEMPTS`` lost runs).
  So an offset above the floor exists exactly when its entry does, and when offset *n* is
  visible every offset from the floor up to *n* is stored. A failed or cancelled append leaves
  no hole (what it stored stays). Within one process, appends to one stream are written in the
  order of the calls: a call made later gets larger offsets.
  ``read_stream(stream, after, limit)``: up to ``limit`` entries with ``offset > after``,
  ascending. ``stream_bounds(streams)`` is ``{stream: (floor, head)}`` for each key given (in
  that order, once): ``head`` the largest offset ever stored (0 for none), ``floor`` such that
  every offset in ``(floor, head]`` is stored (0 until trimmed); one query for the whole list.
  ``trim_streams(before)`` raises each stream's floor (never lowers it) to its largest offset
  created before ``before`` **before** deleting the entries at or below it, and never deletes a
  stream's newest entry: the head stays readable from the entries, so the next append continues
  at head + 1 (the newest entry stays even when it is old; it is at or below the floor, so no
  reader is given it again). It returns how many entries it deleted. With a monotonic clock the
  floor is exactly the last entry created before ``before``; skew between processes only moves
  which entries a trim takes. A reader checks ``after >= floor`` (else it resyncs) and then
  reads: with no holes the entries come as ``after + 1, after + 2, ...``; reading the floor again
  afterwards tells a page that a concurrent trim cut into (the floor is above ``after`` now:
  resync). ``stream_epoch()`` is a short string (16 hex digits) made once per database (by
  ``migrate``, race-free: processes starting together agree), the same for every store object
  on that database ever after; a new database has a new one, so offsets of two databases are
  never confused.
* Fan-out of a chat's events (docs/REALTIME_STREAMS.md, "Fan-out to user streams"):
  ``append_chat_event(chat_id, payload, recipients)`` first appends the event to the chat log
  ``c:<chat_id>`` (a gap-free chat offset, as ``append_stream``). With ``recipients`` None (a
  large chat) that is all: one entry, whatever the chat's size. With recipients (a small chat)
  the chat-log entry stores them and is marked incomplete in the same insert; then each
  recipient's stream ``u:<recipient>`` gets one entry with the payload and its ``source``
  ``(chat_id, chat offset)``, under a unique index on the source per user stream, so a repeat
  is a no-op that reports the offset already taken; then the entry is marked complete. It
  returns ``ChatEventWrite(chat_offset, user_offsets)``. **Order**: before fanning out chat
  offset *n*, the writer completes every earlier incomplete entry of the same chat, in
  chat-offset order, so in each user stream a chat's events appear in chat-offset order.
  **Completion**: a writer that dies half-way leaves its entry incomplete; the chat's next
  event, or ``complete_fanouts(created_before)`` (completes the incomplete entries created
  before a time, each chat's in chat-offset order, together with the same chat's earlier ones;
  returns how many it completed), finishes it. So no event is lost, reordered or duplicated for
  a recipient; the recipients of a half-done fan-out are only delayed. SQLite writes all of it
  in one transaction (an entry is never left incomplete; the sweep finds nothing); MongoDB uses
  single-document inserts and updates only.
  **Markers** (a large chat with its own stream): ``append_chat_event(chat_id, payload, None,
  markers)`` writes the chat-log entry and one *marker copy* per marker user into
  ``u:<user>``: a fan-out copy exactly as above (same payload, source, unique index, order and
  completion rules; the pending entry remembers that its copies are markers, so whoever
  completes it writes marker copies), read back with ``StreamEntry.marker`` True;
  ``user_offsets`` are the markers' offsets. Recipients (a list, even empty) together with
  markers raise ``StoreError``. ``latest_marker(user, chat)`` is ``(user offset, chat
  offset)`` of the newest marker copy of the chat in ``u:<user>`` (None if none).
  **A message's event is written once per chat**: ``append_chat_event(..., message_seq=s)``
  records ``s`` on the chat-log entry under a uniqueness rule per chat log (SQLite: a partial
  unique index on ``(stream, message_seq)``; MongoDB: a partial unique index on ``(s, ms)``).
  When the chat log holds an entry of ``s`` already, nothing new is written (no chat offset,
  no copies) and the result is ``ChatEventWrite(that entry's chat offset, {}, existed=True)``;
  the fan-out of that entry (and of the chat's earlier ones) is completed first if its writer
  died half-way. Of any number of concurrent writers of one ``(chat, s)``, also in other
  processes, exactly one writes the entry. So the writer of message *s* can first write the
  events of the seqs below *s* that the chat log lacks (``last_message_event_seq``, then
  ``messages_in_seq_range`` for the stored messages) and then its own, and the chat log holds
  each message's event once, in seq order. ``last_message_event_seq(chat)`` is the largest
  message seq among the chat log's entries (0 if none), exact also after trims:
  ``trim_streams`` never deletes a chat log's entry of its largest message seq (it stays like
  the newest entry, at or below the floor, never given to a reader again). Uniqueness is
  among the stored entries: an entry that a trim deleted no longer blocks its seq (a writer
  that follows the rule above writes only seqs above ``last_message_event_seq``).
  ``messages_in_seq_range(chat, first, last)`` is the chat's messages with ``first <= seq <=
  last``, ascending by seq; a range of more than ``MESSAGE_RANGE_MAX`` seqs raises
  ``StoreError``.
  **Batches**: ``append_chat_events(chat_id, events)`` (``ChatEvent``: the arguments of one
  call) is ``append_chat_event`` for each event in order, with every guarantee above (order,
  completion, markers, ``existed`` per message seq, also for a seq repeated within the batch)
  and one ``ChatEventWrite`` per event, in order; ``append_chat_event`` is the batch of one.
  Every event is checked first, so a malformed one raises ``StoreError`` with nothing written.
  SQLite writes the whole batch in one transaction (all of it or none of it; the chat's
  earlier incomplete entries, if any, completed once before its first fan-out). MongoDB
  appends the batch's chat-log entries with one ordered insert and then writes the copies of
  those that have recipients or markers together, per user stream in chat-offset order; a
  writer that stops part-way leaves the rest incomplete, finished by the next event or the
  sweep as above.
  **Messages with their events**: ``append_messages_with_events(chat_id, drafts, event_of)``
  is ``append_messages`` and, where the adapter can do it in the same transaction, the
  ``append_chat_events`` of ``event_of(message)`` for each message it created, in seq order,
  returned as ``(event, write)`` pairs — but only when the chat log already holds the event
  of every earlier message (``last_message_event_seq``, read in that transaction, is the
  first new seq minus 1) and no sender was refused (``SenderNotMember``: the caller's member
  list, which ``event_of`` used, is stale): then messages and events are stored together or
  not at all. Otherwise, and always on an adapter without transactions (MongoDB), it returns
  ``None`` for the events and has written none: the caller writes them as usual
  (``last_message_event_seq``, the missing ones, then its own). No new message: ``[]``.
  SQLite does it in one transaction (one commit, one call to its writer thread, per batch).
* Streamed chats: ``set_chat_streamed(chat_id)`` sets ``Chat.streamed`` (idempotent, never
  unset; an unknown chat is a no-op); every ``Chat`` the store returns carries the flag;
  ``streamed_chats(user)`` is the ids of the user's chats that have it (any order; one query
  over the user's chats, not over all chats).
* A draft's ``attachments`` are stored with its message (and come back with it everywhere), and
  their uploads count as attached from then on (``Upload.attached``; SQLite: in the same
  transaction; MongoDB: right after the insert, and ``list_unattached_uploads`` repairs a flag a
  crash left unset). A replayed draft stores nothing, so it attaches nothing.
* ``append_messages`` to a chat that does not exist raises ``StoreError`` (callers check the chat
  first); a malformed id that would have to be stored raises ``StoreError``, while a malformed id
  in a read simply finds nothing.
* Email (API_CONTRACT.md §10). ``User.email_verified`` starts false; ``set_email_verified`` sets
  it. Email tokens are stored by hash; ``consume_email_token`` spends a live token of the given
  purpose exactly once, also under concurrent calls, and spends the user's other tokens of that
  purpose with it. ``set_password`` replaces the hash and revokes every refresh-token family of
  the user (MongoDB: revoke, set, revoke again, so a login racing the change cannot survive it).
  ``claim_send_slot`` is an atomic per-key rate limit.
* The outbox: ``claim_mail`` hands a due pending mail (``next_attempt_at <= now``, oldest due
  first) to one caller only: it sets a fresh ``lease_id``, counts the attempt and moves
  ``next_attempt_at`` to the lease's end, so a crashed mailer's mail is due again then.
  ``mark_mail_sent`` / ``retry_mail`` / ``fail_mail`` act only with the current ``lease_id``
  (and say whether they did). ``purge_outbox`` deletes mail finished before a time.
* Presence for digests: ``record_presence`` keeps each user's latest state (a report older
  than the stored one is ignored); going offline sets ``check_at`` to that time.
  ``flag_digest_checks(active_since, at)`` sets ``check_at = at`` for offline users without one
  who are members of a chat with ``last_activity_at > active_since``; ``digest_checks`` lists
  offline users with ``check_at <= due``, oldest first; ``set_digest_check`` is a
  compare-and-set on ``check_at`` (with ``digest_sent_at``: only while still offline).
* The database not answering, and any call after ``close()``, raise ``StoreUnavailable``;
  ``close()`` twice is harmless.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from datetime import datetime

from messenger.models import (
    AppendResult,
    Chat,
    ChatEvent,
    ChatEventWrite,
    ChatType,
    ChatView,
    DigestCheck,
    EmailTokenPurpose,
    Message,
    MessageDraft,
    OutboxMail,
    SenderNotMember,
    SpendResult,
    StreamEntry,
    Upload,
    User,
)
from messenger.store.errors import StoreError

#: The most seqs one ``Store.messages_in_seq_range`` call may span.
MESSAGE_RANGE_MAX = 1000


def check_seq_range(first_seq: object, last_seq: object) -> int:
    """How many seqs ``first_seq..last_seq`` spans (0 when ``last_seq < first_seq``); seqs
    that are not ints, or a span over ``MESSAGE_RANGE_MAX``, raise ``StoreError``."""
    for seq in (first_seq, last_seq):
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise StoreError(f"malformed message seq: {seq!r}")
    span = max(last_seq - first_seq + 1, 0)  # type: ignore[operator]
    if span > MESSAGE_RANGE_MAX:
        raise StoreError(f"a message range spans at most {MESSAGE_RANGE_MAX} seqs, not {span}")
    return span


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

    @abc.abstractmethod
    async def set_display_name(self, user_id: str, display_name: str) -> User | None:
        """Replace the user's display name (and its search key); the user now, or None if
        there is no such user."""

    @abc.abstractmethod
    async def search_contacts(self, user_id: str, prefix: str, limit: int) -> list[User]:
        """Up to ``limit`` users sharing a chat with ``user_id`` (not ``user_id`` itself) whose
        name key starts with ``prefix``, ordered by (name key, id); see the module docstring."""

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
        """Revoke every token of a family, spent or not (reuse detection, logout): each then
        reports ``REVOKED``, also tokens a rotation adds to it afterwards. Idempotent; an
        unknown family is a no-op."""

    @abc.abstractmethod
    async def revoke_user_tokens(self, user_id: str) -> None:
        """Revoke every refresh-token family of a user (password change, logout everywhere):
        each then reports ``REVOKED``, also for tokens a rotation adds to it afterwards; a family
        started afterwards is live. A user without families (or a malformed id) is a no-op."""

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
    async def set_chat_streamed(self, chat_id: str) -> None:
        """Flag the chat as streamed (``Chat.streamed``): idempotent, never unset; a no-op for
        a chat that does not exist."""

    @abc.abstractmethod
    async def streamed_chats(self, user_id: str) -> list[str]:
        """The ids of the chats ``user_id`` is a member of that are streamed (any order)."""

    @abc.abstractmethod
    async def get_chat_view(self, chat_id: str, user_id: str) -> ChatView | None:
        """The chat with its last message and ``user_id``'s read position (None if no chat)."""

    @abc.abstractmethod
    async def list_chat_views(self, user_id: str, limit: int) -> list[ChatView]:
        """Chats where ``user_id`` is a member, most recent activity first (ties: newest id)."""

    @abc.abstractmethod
    async def mark_read(self, chat_id: str, user_id: str, seq: int) -> int:
        """Move the read position forward to ``min(seq, last_seq)``; return the position now."""

    @abc.abstractmethod
    async def add_members(self, chat_id: str, user_ids: Sequence[str]) -> Chat:
        """Append the users that are not members yet, in the order given; return the chat now."""

    @abc.abstractmethod
    async def remove_member(self, chat_id: str, user_id: str) -> Chat:
        """Remove one member (a no-op if not a member); return the chat now."""

    @abc.abstractmethod
    async def contact_ids(self, user_id: str, max_chat_size: int | None = None) -> set[str]:
        """The users sharing at least one chat with ``user_id`` (``user_id`` excluded); with
        ``max_chat_size``, only chats of at most that many members count."""

    # -- messages ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def append_messages(
        self, chat_id: str, drafts: Sequence[MessageDraft]
    ) -> list[AppendResult | SenderNotMember]:
        """Append a batch to one existing chat; one result per draft, in order.

        Drafts whose ``(sender_id, client_msg_id)`` was stored before (or repeats earlier in the
        batch) return the original message with ``created=False`` and take no ``seq``. A new
        draft from a sender who is not a member gets ``SenderNotMember``.
        """

    @abc.abstractmethod
    async def append_messages_with_events(
        self, chat_id: str, drafts: Sequence[MessageDraft],
        event_of: Callable[[Message], ChatEvent],
    ) -> tuple[list[AppendResult | SenderNotMember], list[tuple[ChatEvent, ChatEventWrite]] | None]:
        """``append_messages``, and in the same transaction the events ``event_of`` gives for
        the messages it created, in seq order, as ``(event, write)`` pairs; ``None`` (nothing
        of them written) when the adapter cannot, the chat log lacks an earlier message's
        event, or a sender was refused (see the module docstring). ``event_of`` runs inside
        the store's call (on its writer thread for SQLite): a pure function of the message."""

    @abc.abstractmethod
    async def get_message(self, chat_id: str, message_id: str) -> Message | None: ...

    @abc.abstractmethod
    async def list_messages(
        self, chat_id: str, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Up to ``limit`` messages with ``seq < before_seq`` (or the newest), oldest first,
        and whether older ones exist."""

    @abc.abstractmethod
    async def list_messages_json(
        self, chat_id: str, before_seq: int | None, limit: int, member_id: str
    ) -> tuple[list[bytes], bool]:
        """``list_messages``, each message as its API JSON (what ``Message.to_json()`` gives,
        encoded; a history page embeds them as they are), and only if ``member_id`` is a
        member of the chat now — else ``([], False)``, as for an empty page (the caller tells
        the two apart only when the page is empty). An adapter may encode straight from its
        columns; the JSON values must equal ``to_json()``'s (a contract test compares)."""

    @abc.abstractmethod
    async def messages_in_seq_range(
        self, chat_id: str, first_seq: int, last_seq: int
    ) -> list[Message]:
        """The chat's messages with ``first_seq <= seq <= last_seq``, ascending by seq (at most
        ``last_seq - first_seq + 1``); a range over ``MESSAGE_RANGE_MAX`` seqs raises
        ``StoreError``, a malformed chat id finds nothing."""

    # -- streams (gap-free offsets; docs/REALTIME_STREAMS.md) ------------------------------------
    @abc.abstractmethod
    async def stream_epoch(self) -> str:
        """The store's stream epoch: made once per database, the same ever after."""

    @abc.abstractmethod
    async def append_stream(self, stream: str, payloads: Sequence[bytes]) -> list[int]:
        """Append to one stream; the offsets the payloads took, increasing in batch order, with
        no holes (see the module docstring). A malformed stream key raises ``StoreError``."""

    @abc.abstractmethod
    async def read_stream(self, stream: str, after: int, limit: int) -> list[StreamEntry]:
        """Up to ``limit`` entries of the stream with ``offset > after``, ascending."""

    @abc.abstractmethod
    async def stream_bounds(self, streams: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``{stream: (floor, head)}`` for each key given: every offset in ``(floor, head]`` is
        stored; ``head`` is the largest offset ever stored (both 0 for an empty stream)."""

    @abc.abstractmethod
    async def trim_streams(self, created_before: datetime) -> int:
        """Retention: per stream, raise the floor to the largest offset created before
        ``created_before``, then delete the entries at or below it except the stream's newest
        (and a chat log's entry of its largest message seq); return how many were deleted."""

    async def append_chat_event(
        self,
        chat_id: str,
        payload: bytes,
        recipients: Sequence[str] | None,
        markers: Sequence[str] = (),
        message_seq: int | None = None,
    ) -> ChatEventWrite:
        """Append a chat's event to its chat log and, with ``recipients`` (a small chat), fan it
        out to their user streams, in order, each once; with ``recipients`` None and
        ``markers``, write a marker copy to each marker user's stream the same way (see the
        module docstring). With ``message_seq`` (the event of that message), write nothing if
        the chat log has that seq's entry already (``existed``). Recipients and markers
        together, a malformed chat or user id, or a ``message_seq`` that is not an int >= 1,
        raise ``StoreError``. ``append_chat_events`` with this one event."""
        [write] = await self.append_chat_events(
            chat_id, [ChatEvent(payload, recipients, markers, message_seq)]
        )
        return write

    @abc.abstractmethod
    async def append_chat_events(
        self, chat_id: str, events: Sequence[ChatEvent]
    ) -> list[ChatEventWrite]:
        """``append_chat_event`` for each event, in order: one result per event, in order, the
        same as those calls would give (chat offsets increasing in batch order, a repeated
        ``message_seq`` ``existed``, also within the batch). Every event is checked before
        anything is written: one malformed event raises ``StoreError`` and writes nothing. An
        empty batch writes nothing and returns ``[]`` (see the module docstring)."""

    @abc.abstractmethod
    async def last_message_event_seq(self, chat_id: str) -> int:
        """The largest ``message_seq`` among the chat log's entries (0 if none), also after
        trims; a malformed chat id raises ``StoreError``."""

    @abc.abstractmethod
    async def latest_marker(self, user_id: str, chat_id: str) -> tuple[int, int] | None:
        """``(user-stream offset, chat offset)`` of the newest marker copy of ``chat_id`` in
        ``u:<user_id>``; None if there is none (or an id is malformed)."""

    @abc.abstractmethod
    async def complete_fanouts(self, created_before: datetime) -> int:
        """Complete the fan-outs left incomplete by writers that died, of chat-log entries
        created before ``created_before`` (oldest first, in chat-offset order); how many."""

    # -- uploads and attachments ---------------------------------------------------------------
    @abc.abstractmethod
    async def add_upload(self, upload: Upload) -> None:
        """Record a new upload (``owner_id`` is a user; ``id`` is new)."""

    @abc.abstractmethod
    async def get_uploads(self, upload_ids: Sequence[str]) -> list[Upload]:
        """The uploads that exist among ``upload_ids`` (any order, no duplicates)."""

    @abc.abstractmethod
    async def mark_upload_ready(self, upload_id: str, object_key: str) -> Upload | None:
        """Move a pending upload to ``READY`` with its checked bytes at ``object_key``; a ready
        one stays as it is, key included (the first completion wins). The record now, or
        None."""

    @abc.abstractmethod
    async def messages_with_attachments(self, attachment_ids: Sequence[str]) -> list[Message]:
        """The stored messages that carry any of ``attachment_ids`` (any chat, any order)."""

    @abc.abstractmethod
    async def list_unattached_uploads(self, created_before: datetime, limit: int) -> list[Upload]:
        """Up to ``limit`` uploads created before ``created_before`` that no stored message
        carries, oldest first."""

    @abc.abstractmethod
    async def delete_upload(self, upload_id: str) -> bool:
        """Delete an upload's record unless a stored message carries it; whether it did."""

    # -- email: verification, password reset (API_CONTRACT.md §10) --------------------------
    @abc.abstractmethod
    async def set_email_verified(self, user_id: str) -> User | None:
        """Mark the user's email verified; the user now, or None if there is no such user."""

    @abc.abstractmethod
    async def set_password(self, user_id: str, password_hash: bytes) -> bool:
        """Replace the password hash and revoke every refresh-token family of the user;
        whether the user exists."""

    @abc.abstractmethod
    async def add_email_token(
        self, token_hash: str, user_id: str, purpose: EmailTokenPurpose, expires_at: datetime
    ) -> None:
        """Record an emailed token by its hash (the hash is new)."""

    @abc.abstractmethod
    async def consume_email_token(self, token_hash: str, purpose: EmailTokenPurpose) -> str | None:
        """Spend a live token of ``purpose`` and every other token of its user and purpose;
        the user id, or None (unknown, expired, spent or of the other purpose)."""

    @abc.abstractmethod
    async def claim_send_slot(self, key: str, now: datetime, interval: float) -> float:
        """Rate limit: when the last slot of ``key`` was taken at least ``interval`` seconds
        before ``now`` (or never), take it and return 0; else return the seconds left."""

    # -- the outbox ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def enqueue_mail(self, mail: OutboxMail) -> None:
        """Store a new pending mail (its ``id`` is new); due at its ``next_attempt_at``."""

    @abc.abstractmethod
    async def claim_mail(self, now: datetime, lease_until: datetime) -> OutboxMail | None:
        """Claim the pending mail due first (``next_attempt_at <= now``) for one caller: a new
        ``lease_id``, ``attempts + 1``, ``next_attempt_at = lease_until``. None if none is due."""

    @abc.abstractmethod
    async def mark_mail_sent(self, mail_id: str, lease_id: str, at: datetime) -> bool:
        """Sent, if ``lease_id`` still holds the mail; whether it did."""

    @abc.abstractmethod
    async def retry_mail(
        self, mail_id: str, lease_id: str, next_attempt_at: datetime, error: str
    ) -> bool:
        """Pending again from ``next_attempt_at``, if ``lease_id`` still holds the mail."""

    @abc.abstractmethod
    async def fail_mail(self, mail_id: str, lease_id: str, at: datetime, error: str) -> bool:
        """Failed for good, if ``lease_id`` still holds the mail; whether it did."""

    @abc.abstractmethod
    async def get_mail(self, mail_id: str) -> OutboxMail | None: ...

    @abc.abstractmethod
    async def list_mail(self, recipient: str | None = None, limit: int = 100) -> list[OutboxMail]:
        """The newest mail first (only to ``recipient`` when given)."""

    @abc.abstractmethod
    async def purge_outbox(self, finished_before: datetime) -> int:
        """Delete sent and failed mail finished before the time; how many."""

    @abc.abstractmethod
    async def count_pending_mail(self) -> int:
        """How much mail is waiting in the outbox (pending: due now, later, or being sent)."""

    # -- presence and missed-message digests -------------------------------------------------------
    @abc.abstractmethod
    async def record_presence(self, user_id: str, online: bool, at: datetime) -> None:
        """The user came online (first session) or went offline (after the last one) at ``at``."""

    @abc.abstractmethod
    async def flag_digest_checks(self, active_since: datetime, at: datetime) -> None:
        """``check_at = at`` for offline users without one, in chats active after the time."""

    @abc.abstractmethod
    async def digest_checks(self, due: datetime, limit: int) -> list[DigestCheck]:
        """Offline users with ``check_at <= due``, oldest ``check_at`` first."""

    @abc.abstractmethod
    async def set_digest_check(
        self,
        user_id: str,
        expected: datetime,
        check_at: datetime | None,
        digest_sent_at: datetime | None = None,
    ) -> bool:
        """If ``check_at`` is still ``expected`` (and, with ``digest_sent_at``, the user is still
        offline), set it (and ``last_digest_at``); whether it did."""
