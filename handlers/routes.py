"""The route table. Paths are written as OpenAPI templates; ``url_specs`` turns them into
Tornado patterns, and tests/test_openapi.py checks openapi.json covers exactly these."""

from __future__ import annotations

import re

import tornado.web

from handlers.auth import (
    LoginHandler,
    LogoutAllHandler,
    LogoutHandler,
    RefreshHandler,
    RegisterHandler,
)
from handlers.chats import ChatHandler, ChatReadHandler, ChatsHandler
from handlers.email import (
    PasswordResetConfirmHandler,
    PasswordResetRequestHandler,
    ResendVerificationHandler,
    ResetPasswordPage,
    VerifyEmailHandler,
    VerifyEmailPage,
)
from handlers.events import EventsHandler
from handlers.members import ChatMemberHandler, ChatMembersHandler
from handlers.messages import MessagesHandler
from handlers.meta import HealthHandler, OpenApiHandler, ReadyHandler, RootHandler
from handlers.metrics import MetricsHandler
from handlers.storage import StorageHandler
from handlers.typing import TypingHandler
from handlers.uploads import AttachmentHandler, UploadCompleteHandler, UploadsHandler
from handlers.users import MeHandler, UserHandler, UsersHandler
from handlers.web import AppFiles, AppPage, AppRedirect, DocsFiles, DocsPage
from handlers.ws import WebSocketHandler

#: Tornado tries the patterns in this order: the routes a client calls all day come first
#: (no two patterns match one path, except ``/api/users/me`` before ``/api/users/{user_id}``).
ROUTES: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    ("/api/chats/{chat_id}/messages", MessagesHandler),
    ("/api/chats", ChatsHandler),
    ("/api/events", EventsHandler),
    ("/ws", WebSocketHandler),
    ("/api/chats/{chat_id}/read", ChatReadHandler),
    ("/api/chats/{chat_id}/typing", TypingHandler),
    ("/", RootHandler),
    ("/api/healthz", HealthHandler),
    ("/api/readyz", ReadyHandler),
    ("/api/openapi.json", OpenApiHandler),
    ("/metrics", MetricsHandler),
    ("/api/auth/register", RegisterHandler),
    ("/api/auth/login", LoginHandler),
    ("/api/auth/refresh", RefreshHandler),
    ("/api/auth/logout", LogoutHandler),
    ("/api/auth/logout-all", LogoutAllHandler),
    ("/api/auth/verify", VerifyEmailHandler),
    ("/api/auth/verify/resend", ResendVerificationHandler),
    ("/api/auth/password-reset/request", PasswordResetRequestHandler),
    ("/api/auth/password-reset/confirm", PasswordResetConfirmHandler),
    ("/verify-email", VerifyEmailPage),
    ("/reset-password", ResetPasswordPage),
    ("/api/users", UsersHandler),
    ("/api/users/me", MeHandler),
    ("/api/users/{user_id}", UserHandler),
    ("/api/chats/{chat_id}", ChatHandler),
    ("/api/uploads", UploadsHandler),
    ("/api/uploads/{upload_id}/complete", UploadCompleteHandler),
    ("/api/attachments/{attachment_id}", AttachmentHandler),
    ("/api/storage/{token}", StorageHandler),
    ("/api/chats/{chat_id}/members", ChatMembersHandler),
    ("/api/chats/{chat_id}/members/{user_id}", ChatMemberHandler),
    ("/app", AppRedirect),
    ("/app/", AppPage),
    ("/app/{path}", AppFiles),
    ("/api/docs", DocsPage),
    ("/api/docs/{path}", DocsFiles),
]

_PARAM = re.compile(r"\{(\w+)\}")


def to_pattern(template: str) -> str:
    """``/api/chats/{chat_id}`` -> ``/api/chats/(?P<chat_id>[^/]+)$``."""
    return _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", template) + "$"


def url_specs() -> list[tornado.web.URLSpec]:
    return [tornado.web.url(to_pattern(path), handler) for path, handler in ROUTES]
