"""Accounts: registration, login, refresh-token rotation with reuse detection, lookups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from messenger.errors import (
    EmailInUse,
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    UserNotFound,
)
from messenger.ids import is_valid_id
from messenger.models import RefreshSpend, User
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
    def __init__(self, store: Store, tokens: TokenCodec, hasher: PasswordHasher) -> None:
        self._store = store
        self._tokens = tokens
        self._hasher = hasher

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

    async def reset_password(self, user_id: str, password: str) -> bool:
        """Set a new password and revoke every refresh token of the account (every session
        must log in again); whether the account exists."""
        return await self._store.set_password(user_id, await self._hasher.hash(password))
