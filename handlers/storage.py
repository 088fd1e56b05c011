"""PUT and GET /api/storage/{token}: the signed upload and download URLs of local-disk storage
(API_CONTRACT.md §9). With S3 configured this path does not exist (404 ``not_found``).

No bearer token: the token in the path is the credential (``messenger.storage.local``). A PUT
is checked before its body is read — grant, ``Content-Length`` equal to the signed size,
``Content-Type`` equal to the signed type, and an upload still pending: completion ends the
URL (403), since its bytes could reach nobody — then streamed to a temporary file that becomes
the object only once complete (if the upload is still pending then).
"""

from __future__ import annotations

import asyncio
import math
import time

import tornado.web

from handlers.base import BaseHandler
from messenger.errors import (
    InvalidSignature,
    NotFound,
    UploadSizeMismatch,
    UploadTypeMismatch,
)
from messenger.storage.local import BadGrant, Grant, Incoming, LocalStorage

CHUNK_BYTES = 256 * 1024


@tornado.web.stream_request_body
class StorageHandler(BaseHandler):
    requires_auth = False

    def initialize(self) -> None:
        self._grant: Grant | None = None
        self._incoming: Incoming | None = None

    def _storage(self) -> LocalStorage:
        storage = self.services.storage
        if not isinstance(storage, LocalStorage):
            raise NotFound("no such resource")
        return storage

    async def prepare(self) -> None:
        self._refuse_body()  # until a valid PUT grant says how many bytes to take
        storage = self._storage()
        method = self.request.method or ""
        if method not in ("PUT", "GET"):
            return  # answered with 405
        token = self.path_kwargs.get("token", "")
        try:
            grant = storage.verify(token, method)
        except BadGrant as exc:
            raise InvalidSignature(f"invalid storage URL: {exc}") from None
        self._grant = grant
        if method == "GET":
            return
        declared = self.request.headers.get("Content-Length", "")
        if not declared.isdigit() or int(declared) != grant.size:
            raise UploadSizeMismatch(
                f"Content-Length must be {grant.size}, the size declared for this upload"
            )
        content_type = self.request.headers.get("Content-Type", "").strip().lower()
        if content_type != grant.content_type:
            raise UploadTypeMismatch(
                f"Content-Type must be {grant.content_type!r}, the type declared for this upload"
            )
        await self._check_upload_open(grant)
        self.request.connection.set_max_body_size(max(grant.size, 1))
        self._incoming = storage.open_incoming(grant.key)

    async def _check_upload_open(self, grant: Grant) -> None:
        if not await self.services.attachments.accepts_upload(grant.key):
            raise InvalidSignature(
                "this URL has expired: its upload is complete (start a new upload to send "
                "other bytes)"
            )

    def _refuse_body(self) -> None:
        """Answer without reading the body: the connection closes after the response."""
        self.request.connection.set_max_body_size(0)

    def data_received(self, chunk: bytes) -> None:
        if self._incoming is not None:
            self._incoming.write(chunk)

    async def put(self, token: str) -> None:
        incoming, grant = self._incoming, self._grant
        assert incoming is not None and grant is not None
        self._incoming = None
        if incoming.written != grant.size:  # cannot happen with a Content-Length; a guard
            incoming.abort()
            raise UploadSizeMismatch(f"the body must be {grant.size} bytes")
        try:
            await self._check_upload_open(grant)  # completed while the body arrived?
        except BaseException:
            incoming.abort()
            raise
        await asyncio.to_thread(incoming.commit)
        self.send_json({"status": "stored"})

    async def get(self, token: str) -> None:
        grant = self._grant
        assert grant is not None
        try:
            file = await asyncio.to_thread(self._storage().path(grant.key).open, "rb")
        except FileNotFoundError:
            raise NotFound("no such file") from None
        try:
            size = await asyncio.to_thread(lambda: file.seek(0, 2))
            await asyncio.to_thread(file.seek, 0)
            remaining = max(0, math.floor(grant.expires_at - time.time()))
            self.set_header("Content-Type", grant.content_type)
            self.set_header("Content-Disposition", grant.disposition or "attachment")
            self.set_header("Content-Length", str(size))
            self.set_header("Content-Security-Policy", "sandbox")
            self.set_header("Cache-Control", f"private, max-age={remaining}")
            while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
                self.write(chunk)
                await self.flush()
        finally:
            file.close()
        self.finish()

    def on_connection_close(self) -> None:
        self._abort()

    def on_finish(self) -> None:
        self._abort()

    def _abort(self) -> None:
        incoming, self._incoming = self._incoming, None
        if incoming is not None:
            incoming.abort()
