"""The services one process runs, built from settings: the store and the domain services."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.hub import RealtimeHub
from actors.mail import MailWorkers
from actors.uploads import UploadCleaner
from config import Settings
from messenger.accounts import AccountService
from messenger.attachments import AttachmentService
from messenger.auth_limits import AuthLimits
from messenger.chats import ChatService
from messenger.errors import InvalidToken
from messenger.known_users import KnownUsers
from messenger.mail.service import EmailService
from messenger.passwords import PasswordHasher
from messenger.realtime.broker import InProcessNetwork
from messenger.storage import ObjectStorage, open_storage
from messenger.store import Store, open_store
from messenger.token_cache import VerifiedAccessTokens
from messenger.tokens import TokenClaims, TokenCodec


@dataclass
class Services:
    settings: Settings
    store: Store
    tokens: TokenCodec
    accounts: AccountService
    chats: ChatService
    storage: ObjectStorage
    attachments: AttachmentService
    known_users: KnownUsers
    auth_limits: AuthLimits
    #: What this process's nodes share (tests run several nodes in one process); None: its own.
    network: InProcessNetwork | None = None
    realtime: RealtimeHub = field(init=False)
    upload_cleaner: UploadCleaner | None = field(default=None, init=False)
    email: EmailService = field(init=False)
    mail_workers: MailWorkers = field(init=False)
    access_tokens: VerifiedAccessTokens = field(init=False)

    def __post_init__(self) -> None:
        self.access_tokens = VerifiedAccessTokens(self.tokens)
        self.realtime = RealtimeHub(self.settings, self.store, attachments=self.chats,
                                    network=self.network)
        self.chats.set_notifier(self.realtime)
        self.email = EmailService(self.settings, self.store, self.accounts)
        self.mail_workers = MailWorkers(self.settings, self.store, self.email)

    @classmethod
    def build(cls, settings: Settings, store: Store | None = None,
              network: InProcessNetwork | None = None) -> Services:
        store = store or open_store(settings)
        tokens = TokenCodec(
            settings.jwt_secret,
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.access_token_ttl,
            settings.refresh_token_ttl,
        )
        hasher = PasswordHasher(settings.bcrypt_rounds)
        storage = open_storage(settings)
        attachments = AttachmentService(
            store,
            storage,
            max_bytes=settings.upload_max_bytes,
            allowed_types=settings.upload_allowed_types,
            url_ttl=settings.upload_url_ttl,
            orphan_age=settings.upload_orphan_age,
            max_per_message=settings.max_attachments_per_message,
        )
        return cls(
            settings=settings,
            store=store,
            tokens=tokens,
            accounts=AccountService(store, tokens, hasher),
            chats=ChatService(
                store,
                max_group_members=settings.max_group_members,
                max_chats_listed=settings.max_chats_listed,
                attachments=attachments,
            ),
            storage=storage,
            attachments=attachments,
            known_users=KnownUsers(store),
            auth_limits=AuthLimits(settings),
            network=network,
        )

    async def authenticate(self, access_token: str, remember: bool = True) -> TokenClaims:
        """The claims of a valid access token of an existing account; ``InvalidToken`` for
        anything else (the REST bearer check and the WebSocket handshake both use this; the
        handshake does not ``remember`` the token: messenger/token_cache.py)."""
        claims = self.access_tokens.decode(access_token, remember)
        if not await self.known_users.exists(claims.user_id):
            raise InvalidToken("the account of this token does not exist")
        return claims

    async def start(self) -> None:
        await self.store.migrate()
        await self.storage.start()
        self.upload_cleaner = UploadCleaner(
            self.attachments, self.settings.upload_cleanup_interval
        ).start()  # type: ignore[assignment]
        await self.realtime.start()
        await self.mail_workers.start()

    async def close(self) -> None:
        await self.realtime.close()
        await self.mail_workers.close()
        if self.upload_cleaner is not None:
            await self.upload_cleaner.stop()
        await self.store.close()
        await self.storage.close()
