"""Local-disk object storage: the default when no S3 is configured (``make run``, one process).

Objects are files under ``root`` (``MESSENGER_DATA_DIR/objects``), named by their key. The
server itself takes the uploads and serves the downloads at ``/api/storage/{token}``
(``handlers/storage.py``), so clients follow exactly the flow they follow with S3: the token
is a signed, expiring grant for one method on one key —
``base64url(JSON grant) "." base64url(HMAC-SHA256)`` with a key derived from ``JWT_SECRET``.
A PUT grant binds the content type and size; a GET grant the type and the disposition.

An upload is written to a temporary file and renamed into place when complete, so a partial
upload is never visible; ``copy`` is a hard link (a byte copy where links are not supported)
renamed into place the same way. No content type is kept per object: the PUT handler enforces
the signed one, so ``head`` reports ``content_type=None`` (the signature check still applies).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import orjson

from messenger.clock import from_millis, utcnow
from messenger.storage.base import (
    ObjectInfo,
    ObjectStorage,
    SignedRequest,
    StorageUnavailable,
    content_disposition,
)

URL_PREFIX = "/api/storage/"
# Matched with fullmatch: ``$`` would also accept a final newline.
_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
_TOKEN_MAX = 4096


class BadGrant(Exception):
    """A token that is malformed, altered, for another method, or expired."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows."""

    method: str  # "PUT" or "GET"
    key: str
    content_type: str
    expires_at: int  # unix seconds
    size: int | None = None  # PUT: the exact body length
    disposition: str | None = None  # GET: the Content-Disposition to answer with


class LocalStorage(ObjectStorage):
    backend = "local"

    def __init__(self, root: Path, secret: str) -> None:
        self.root = Path(root)
        self._tmp = self.root / ".incoming"
        self._key = hmac.new(secret.encode(), b"messenger local storage v1", "sha256").digest()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._tmp.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    # -- signing -----------------------------------------------------------------------------
    def _sign(self, grant: dict[str, object]) -> str:
        payload = _b64(orjson.dumps(grant, option=orjson.OPT_SORT_KEYS))
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return f"{payload}.{_b64(mac)}"

    def verify(self, token: str, method: str, now: float | None = None) -> Grant:
        """The grant of a token valid for ``method`` now; ``BadGrant`` otherwise."""
        if len(token) > _TOKEN_MAX or token.count(".") != 1:
            raise BadGrant("malformed token")
        payload, mac = token.split(".")
        expected = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        try:
            given = _unb64(mac)
            body = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            raise BadGrant("malformed token") from None
        if not hmac.compare_digest(given, expected):
            raise BadGrant("bad signature")
        try:
            grant = Grant(
                method=body["m"],
                key=body["k"],
                content_type=body["t"],
                expires_at=int(body["e"]),
                size=body.get("n"),
                disposition=body.get("d"),
            )
        except (KeyError, TypeError, ValueError):
            raise BadGrant("malformed token") from None
        if grant.method != method:
            raise BadGrant(f"this URL is for {grant.method}, not {method}")
        if grant.expires_at < (time.time() if now is None else now):
            raise BadGrant("this URL has expired")
        if not _KEY.fullmatch(grant.key):
            raise BadGrant("malformed token")
        return grant

    async def presign_upload(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> SignedRequest:
        expires = _expiry(expires_in)
        token = self._sign(
            {"m": "PUT", "k": _checked(key), "t": content_type, "n": size, "e": expires}
        )
        return SignedRequest(
            "PUT", URL_PREFIX + token, from_millis(expires * 1000), {"Content-Type": content_type}
        )

    async def presign_download(
        self, key: str, *, content_type: str, filename: str, inline: bool, expires_in: int
    ) -> SignedRequest:
        expires = _expiry(expires_in)
        token = self._sign(
            {
                "m": "GET",
                "k": _checked(key),
                "t": content_type,
                "d": content_disposition(filename, inline=inline),
                "e": expires,
            }
        )
        return SignedRequest("GET", URL_PREFIX + token, from_millis(expires * 1000))

    # -- objects -----------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.root / _checked(key)

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            stat = await asyncio.to_thread(self.path(key).stat)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable(f"local storage: {exc}") from exc
        return ObjectInfo(stat.st_size, None)

    async def read_start(self, key: str, length: int) -> bytes:
        def read() -> bytes:
            with self.path(key).open("rb") as file:
                return file.read(length)

        try:
            return await asyncio.to_thread(read)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise StorageUnavailable(f"local storage: {exc}") from exc

    async def copy(self, source: str, destination: str) -> bool:
        source_path, destination_path = self.path(source), self.path(destination)
        staged = self._tmp / uuid.uuid4().hex

        def copy() -> bool:
            self._tmp.mkdir(parents=True, exist_ok=True)
            try:
                # Objects are only ever replaced whole (a rename), never written in place, so
                # a second link to the file is a copy that later uploads cannot change.
                os.link(source_path, staged)
            except FileNotFoundError:
                return False
            except OSError:  # a file system without hard links: copy the bytes
                try:
                    shutil.copyfile(source_path, staged)
                except FileNotFoundError:
                    return False
            try:
                destination_path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, destination_path)
            finally:
                staged.unlink(missing_ok=True)
            return True

        try:
            return await asyncio.to_thread(copy)
        except OSError as exc:
            raise StorageUnavailable(f"local storage: {exc}") from exc

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self.path(key).unlink, missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"local storage: {exc}") from exc

    def open_incoming(self, key: str) -> Incoming:
        """A temporary file that becomes the object ``key`` on ``commit``."""
        return Incoming(self._tmp / uuid.uuid4().hex, self.path(key))


class Incoming:
    """An upload being received: written to a temporary file, renamed into place when whole.

    Writes are synchronous (small chunks into the page cache); local storage is the
    one-process development mode.
    """

    def __init__(self, tmp: Path, final: Path) -> None:
        self._tmp = tmp
        self._final = final
        tmp.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = tmp.open("wb")
        self.written = 0

    def write(self, chunk: bytes) -> None:
        if self._file is not None:
            self._file.write(chunk)
            self.written += len(chunk)

    def commit(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        file.close()
        self._final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, self._final)

    def abort(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()
            self._tmp.unlink(missing_ok=True)


def _checked(key: str) -> str:
    if not _KEY.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"unsafe object key {key!r}")
    return key


def _expiry(expires_in: int) -> int:
    return int((utcnow() + timedelta(seconds=expires_in)).timestamp())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
