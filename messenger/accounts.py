"""Accounts: registration, login, refresh-token rotation with reuse detection, logout (one
session or all of them), the caller's profile edit, and finding people (API_CONTRACT.md §2, §4).

Finding people follows the privacy rule: an exact email finds anyone (a limited number of
lookups per caller, ``EmailLookupLimit``), while a name search sees only the caller's contacts
(``Store.search_contacts``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from messenger.email_lookups import EmailLookupLimit
from messenger.errors import (
    EmailInUse,
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    UserNotFound,
)
from messenger.ids import is_valid_id
from messenger.models import RefreshSpend, User
from messenger.names import name_key
from messenger.passwords import PasswordHasher
from messenger.store import EmailTaken, Store
from messenger.tokens import REFRESH, TokenCodec


@dataclass(frozen=True, slots=True)
class Session:
    """What register, login and refresh hand back to the client."""

    user: User
    access_token: str
    refresh_token: str
    expires_in: int

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user.to_json(include_email=True),
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }


class AccountService:
    def __init__(
        self,
        store: Store,
        tokens: TokenCodec,
        hasher: PasswordHasher,
        *,
        email_lookups: EmailLookupLimit | None = None,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._hasher = hasher
        self._email_lookups = email_lookups or EmailLookupLimit()

    async def register(self, email: str, password: str, display_name: str) -> Session:
        password_hash = await self._hasher.hash(password)
        try:
            user = await self._store.create_user(email, password_hash, display_name)
        except EmailTaken:
            raise EmailInUse("an account with this email already exists") from None
        return await self._start_session(user, family_id=None)

    async def login(self, email: str, password: str) -> Session:
        user = await self._store.get_user_by_email(email)
        ok = await self._hasher.verify(password, user.password_hash if user else None)
        if not ok or user is None:
            raise InvalidCredentials("email or password is wrong")
        return await self._start_session(user, family_id=None)

    async def refresh(
        self, refresh_token: str, *, admit: Callable[[str], None] | None = None
    ) -> Session:
        """Spend a refresh token and issue the next pair of its family.

        Presenting a spent token again revokes the whole family (RFC 9700 reuse detection).
        ``admit(user_id)`` is called once the token's signature and claims are checked and
        before the store is asked (the per-account rate limit; it raises to refuse).
        """
        claims = self._tokens.decode(refresh_token, REFRESH)
        if admit is not None:
            admit(claims.user_id)
        result = await self._store.spend_refresh_token(claims.jti)
        if result.outcome is RefreshSpend.REUSED:
            await self._store.revoke_token_family(claims.family_id or "")
            raise RefreshTokenReused("refresh token was already used; its session is revoked")
        if result.outcome is not RefreshSpend.SPENT or result.token is None:
            raise InvalidToken("refresh token is no longer valid")
        user = await self._store.get_user(result.token.user_id)
        if user is None:
            raise InvalidToken("refresh token is no longer valid")
        return await self._start_session(user, family_id=result.token.family_id)

    async def logout(
        self, refresh_token: str, *, admit: Callable[[str], None] | None = None
    ) -> None:
        """Revoke the family of a validly signed refresh token, whatever its state (live,
        spent, revoked already, purged): idempotent. A token that does not decode raises
        ``InvalidToken`` and revokes nothing. ``admit(user_id)`` as for ``refresh``."""
        claims = self._tokens.decode(refresh_token, REFRESH)
        assert claims.family_id is not None  # decode checks a refresh token's fam
        if admit is not None:
            admit(claims.user_id)
        await self._store.revoke_token_family(claims.family_id)

    async def logout_all(self, user_id: str) -> None:
        """Revoke every refresh-token family of the account (its access tokens stay valid
        until they expire)."""
        await self._store.revoke_user_tokens(user_id)

    async def _start_session(self, user: User, family_id: str | None) -> Session:
        refresh = self._tokens.issue_refresh(user.id, family_id)
        assert refresh.claims.family_id is not None
        await self._store.add_refresh_token(
            refresh.claims.jti, refresh.claims.family_id, user.id, refresh.claims.expires_at
        )
        access = self._tokens.issue_access(user.id)
        return Session(user, access.token, refresh.token, self._tokens.access_ttl)

    async def get_user(self, user_id: str) -> User:
        user = await self._store.get_user(user_id) if is_valid_id(user_id) else None
        if user is None:
            raise UserNotFound("user not found")
        return user

    async def rename(self, user_id: str, display_name: str) -> User:
        """Set the user's display name (already validated); the user now, or ``UserNotFound``."""
        user = await self._store.set_display_name(user_id, display_name)
        if user is None:
            raise UserNotFound("user not found")
        return user

    async def find_by_email(self, caller_id: str, email: str) -> list[User]:
        """The account with exactly ``email`` (already normalised): 0 or 1 users. Counts one
        of the caller's email lookups first (``TooManyAttempts`` over the limit, before the
        store is asked)."""
        self._email_lookups.admit(caller_id)
        user = await self._store.get_user_by_email(email)
        return [user] if user is not None else []

    async def search(self, caller_id: str, prefix: str, limit: int) -> list[User]:
        """Up to ``limit`` of the caller's contacts (users sharing a chat with them, not
        themselves) whose display name starts with ``prefix`` in caseless form
        (``messenger.names``), ordered by that form, then id."""
        return await self._store.search_contacts(caller_id, name_key(prefix), limit)

    async def reset_password(self, user_id: str, password: str) -> bool:
        """Set a new password and revoke every refresh token of the account (every session
        must log in again); whether the account exists."""
        return await self._store.set_password(user_id, await self._hasher.hash(password))
