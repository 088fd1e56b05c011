"""The services one process runs, built from settings: the store and the domain services."""

from __future__ import annotations

from dataclasses import dataclass

from config import Settings
from messenger.accounts import AccountService
from messenger.chats import ChatService
from messenger.passwords import PasswordHasher
from messenger.store import Store, open_store
from messenger.tokens import TokenCodec


@dataclass
class Services:
    settings: Settings
    store: Store
    tokens: TokenCodec
    accounts: AccountService
    chats: ChatService

    @classmethod
    def build(cls, settings: Settings, store: Store | None = None) -> Services:
        store = store or open_store(settings)
        tokens = TokenCodec(
            settings.jwt_secret,
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.access_token_ttl,
            settings.refresh_token_ttl,
        )
        hasher = PasswordHasher(settings.bcrypt_rounds)
        return cls(
            settings=settings,
            store=store,
            tokens=tokens,
            accounts=AccountService(store, tokens, hasher),
            chats=ChatService(
                store,
                max_group_members=settings.max_group_members,
                max_chats_listed=settings.max_chats_listed,
            ),
        )

    async def start(self) -> None:
        await self.store.migrate()

    async def close(self) -> None:
        await self.store.close()
