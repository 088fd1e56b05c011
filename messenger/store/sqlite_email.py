"""The email part of the SQLite adapter: email tokens, rate-limit slots, the outbox, presence
and digest bookkeeping (API_CONTRACT.md §10). Mixed into ``SQLiteStore``; every method runs on
the store's one worker thread through ``_run``, and the multi-statement ones in one
``BEGIN IMMEDIATE`` transaction, so each is atomic against the other calls and other processes.

Tables are created by the email step of ``sqlite_schema.MIGRATIONS``.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from messenger.clock import from_millis, to_millis, utcnow
from messenger.models import DigestCheck, EmailTokenPurpose, MailStatus, OutboxMail, User
from messenger.store.sqlite_parts import USER_COLUMNS, Row, user_from_row, write_transaction

OUTBOX_COLUMNS = (
    "id, kind, recipient, message, status, attempts, next_attempt_at, created_at, lease_id,"
    " last_error, finished_at"
)
# The due mail first; the partial index ``outbox_due`` serves it.
SQL_DUE_MAIL = """
    SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?
    ORDER BY next_attempt_at LIMIT 1
"""
SQL_FLAG_DIGEST_CHECKS = """
    UPDATE presence SET check_at = ?
    WHERE online = 0 AND check_at IS NULL AND user_id IN (
        SELECT cm.user_id FROM chats AS c JOIN chat_members AS cm ON cm.chat_id = c.id
        WHERE c.last_activity_at > ?
    )
"""
SQL_DIGEST_CHECKS = """
    SELECT user_id, changed_at, last_digest_at, check_at FROM presence
    WHERE online = 0 AND check_at <= ? ORDER BY check_at LIMIT ?
"""


class SQLiteEmailMixin:
    """Email, outbox and digest methods of ``SQLiteStore`` (see ``Store`` for the semantics)."""

    _run: Callable[..., Any]

    # -- users -----------------------------------------------------------------------------------
    async def set_email_verified(self, user_id: str) -> User | None:
        def op(conn: sqlite3.Connection) -> Row | None:
            return conn.execute(
                f"UPDATE users SET email_verified = 1 WHERE id = ? RETURNING {USER_COLUMNS}",
                (user_id,),
            ).fetchone()

        row = await self._run(op)
        return user_from_row(row) if row else None

    async def set_password(self, user_id: str, password_hash: bytes) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            with write_transaction(conn):
                changed = conn.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?",
                    (bytes(password_hash), user_id),
                ).rowcount
                conn.execute("UPDATE token_families SET revoked = 1 WHERE user_id = ?", (user_id,))
                return bool(changed)

        return bool(await self._run(op))

    # -- email tokens ----------------------------------------------------------------------------
    async def add_email_token(
        self, token_hash: str, user_id: str, purpose: EmailTokenPurpose, expires_at: datetime
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.execute("DELETE FROM email_tokens WHERE expires_at <= ?",
                             (to_millis(utcnow()),))
                conn.execute(
                    "INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    (token_hash, user_id, str(purpose), to_millis(expires_at)),
                )

        await self._run(op)

    async def consume_email_token(self, token_hash: str, purpose: EmailTokenPurpose) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            with write_transaction(conn):
                row = conn.execute(
                    "DELETE FROM email_tokens WHERE token_hash = ? AND purpose = ?"
                    " RETURNING user_id, expires_at",
                    (token_hash, str(purpose)),
                ).fetchone()
                if row is None:
                    return None
                user_id, expires_ms = row
                if expires_ms <= to_millis(utcnow()):
                    return None
                conn.execute("DELETE FROM email_tokens WHERE user_id = ? AND purpose = ?",
                             (user_id, str(purpose)))
                return str(user_id)

        result: str | None = await self._run(op)
        return result

    async def claim_send_slot(self, key: str, now: datetime, interval: float) -> float:
        now_ms = to_millis(now)

        def op(conn: sqlite3.Connection) -> float:
            with write_transaction(conn):
                row = conn.execute("SELECT at FROM send_slots WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    left = row[0] + interval * 1000 - now_ms
                    if left > 0:
                        return left / 1000
                conn.execute(
                    "INSERT INTO send_slots (key, at) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET at = excluded.at",
                    (key, now_ms),
                )
                return 0.0

        return float(await self._run(op))

    # -- the outbox ------------------------------------------------------------------------------
    async def enqueue_mail(self, mail: OutboxMail) -> None:
        await self._run(
            lambda conn: conn.execute(
                f"INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _mail_row(mail),
            )
        )

    async def claim_mail(self, now: datetime, lease_until: datetime) -> OutboxMail | None:
        lease_id = secrets.token_hex(12)

        def op(conn: sqlite3.Connection) -> Row | None:
            with write_transaction(conn):
                due = conn.execute(SQL_DUE_MAIL, (to_millis(now),)).fetchone()
                if due is None:
                    return None
                return conn.execute(
                    "UPDATE outbox SET lease_id = ?, attempts = attempts + 1,"
                    f" next_attempt_at = ? WHERE id = ? RETURNING {OUTBOX_COLUMNS}",
                    (lease_id, to_millis(lease_until), due[0]),
                ).fetchone()

        row = await self._run(op)
        return _mail(row) if row else None

    async def _finish_attempt(self, mail_id: str, lease_id: str, sets: str,
                              values: Sequence[Any]) -> bool:
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute(
                f"UPDATE outbox SET {sets} WHERE id = ? AND lease_id = ? AND status = 'pending'",
                (*values, mail_id, lease_id),
            ).rowcount

        return bool(await self._run(op))

    async def mark_mail_sent(self, mail_id: str, lease_id: str, at: datetime) -> bool:
        return await self._finish_attempt(
            mail_id, lease_id, "status = 'sent', finished_at = ?, lease_id = NULL",
            (to_millis(at),))

    async def retry_mail(
        self, mail_id: str, lease_id: str, next_attempt_at: datetime, error: str
    ) -> bool:
        return await self._finish_attempt(
            mail_id, lease_id, "next_attempt_at = ?, last_error = ?, lease_id = NULL",
            (to_millis(next_attempt_at), error))

    async def fail_mail(self, mail_id: str, lease_id: str, at: datetime, error: str) -> bool:
        return await self._finish_attempt(
            mail_id, lease_id,
            "status = 'failed', finished_at = ?, last_error = ?, lease_id = NULL",
            (to_millis(at), error))

    async def get_mail(self, mail_id: str) -> OutboxMail | None:
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?", (mail_id,)
            ).fetchone()
        )
        return _mail(row) if row else None

    async def list_mail(self, recipient: str | None = None, limit: int = 100) -> list[OutboxMail]:
        def op(conn: sqlite3.Connection) -> list[Row]:
            if recipient is None:
                return conn.execute(
                    f"SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY created_at DESC, id DESC"
                    " LIMIT ?", (limit,)).fetchall()
            return conn.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE recipient = ?"
                " ORDER BY created_at DESC, id DESC LIMIT ?", (recipient, limit)).fetchall()

        return [_mail(row) for row in await self._run(op)]

    async def purge_outbox(self, finished_before: datetime) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM outbox WHERE status != 'pending' AND finished_at < ?",
                (to_millis(finished_before),),
            ).rowcount

        return int(await self._run(op))

    async def count_pending_mail(self) -> int:
        row = await self._run(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone())
        return int(row[0])

    # -- presence and digests --------------------------------------------------------------------

    async def record_presence(self, user_id: str, online: bool, at: datetime) -> None:
        at_ms = to_millis(at)
        # Going offline asks for a digest check from then on; coming online leaves the check to
        # be skipped (only offline users are checked) and replaced when they leave again.
        await self._run(
            lambda conn: conn.execute(
                """
                INSERT INTO presence (user_id, online, changed_at, check_at)
                VALUES (?1, ?2, ?3, CASE WHEN ?2 THEN NULL ELSE ?3 END)
                ON CONFLICT (user_id) DO UPDATE SET
                    online = excluded.online,
                    changed_at = excluded.changed_at,
                    check_at = CASE WHEN excluded.online THEN presence.check_at
                                    ELSE excluded.changed_at END
                WHERE excluded.changed_at >= presence.changed_at
                """,
                (user_id, int(online), at_ms),
            )
        )

    async def flag_digest_checks(self, active_since: datetime, at: datetime) -> None:
        await self._run(
            lambda conn: conn.execute(
                SQL_FLAG_DIGEST_CHECKS, (to_millis(at), to_millis(active_since))
            )
        )

    async def digest_checks(self, due: datetime, limit: int) -> list[DigestCheck]:
        rows = await self._run(
            lambda conn: conn.execute(SQL_DIGEST_CHECKS, (to_millis(due), limit)).fetchall()
        )
        return [
            DigestCheck(
                user_id,
                from_millis(changed_ms),
                from_millis(digest_ms) if digest_ms is not None else None,
                from_millis(check_ms),
            )
            for user_id, changed_ms, digest_ms, check_ms in rows
        ]

    async def set_digest_check(
        self,
        user_id: str,
        expected: datetime,
        check_at: datetime | None,
        digest_sent_at: datetime | None = None,
    ) -> bool:
        check_ms = to_millis(check_at) if check_at is not None else None

        def op(conn: sqlite3.Connection) -> int:
            if digest_sent_at is None:
                return conn.execute(
                    "UPDATE presence SET check_at = ? WHERE user_id = ? AND check_at = ?",
                    (check_ms, user_id, to_millis(expected)),
                ).rowcount
            return conn.execute(
                "UPDATE presence SET check_at = ?, last_digest_at = ?"
                " WHERE user_id = ? AND check_at = ? AND online = 0",
                (check_ms, to_millis(digest_sent_at), user_id, to_millis(expected)),
            ).rowcount

        return bool(await self._run(op))


# -- rows <-> records ------------------------------------------------------------------------------
def _mail_row(mail: OutboxMail) -> Row:
    return (
        mail.id,
        mail.kind,
        mail.recipient,
        bytes(mail.message),
        str(mail.status),
        mail.attempts,
        to_millis(mail.next_attempt_at),
        to_millis(mail.created_at),
        mail.lease_id,
        mail.last_error,
        to_millis(mail.finished_at) if mail.finished_at is not None else None,
    )


def _mail(row: Row) -> OutboxMail:
    (mail_id, kind, recipient, message, status, attempts, next_ms, created_ms, lease_id,
     last_error, finished_ms) = row
    return OutboxMail(
        mail_id,
        kind,
        recipient,
        bytes(message),
        MailStatus(status),
        attempts,
        from_millis(next_ms),
        from_millis(created_ms),
        lease_id,
        last_error,
        from_millis(finished_ms) if finished_ms is not None else None,
    )
