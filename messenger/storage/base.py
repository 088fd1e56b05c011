"""The object-storage interface attachments are kept behind: S3-compatible or local disk.

Objects are addressed by key (``uploads/<upload id>``, ``attachments/<upload id>-<nonce>``).
Clients move the bytes themselves, through signed, expiring requests the storage hands out
(``presign_upload``, ``presign_download``); the server copies what arrived to a key no upload
request points at (``copy``), checks the copy (``head``, ``read_start``) and deletes what is no
longer wanted. Nothing here knows about users, chats or HTTP errors.
"""

from __future__ import annotations

import abc
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from messenger.clock import isoformat


class StorageError(Exception):
    """The storage refused or failed an operation."""


class StorageUnavailable(StorageError):
    """The storage did not answer (connection refused, timeout, closed)."""


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """An HTTP request a client may make without a bearer token, until ``expires_at``.

    ``url`` is absolute for S3; local storage gives a path on this server (``/api/storage/…``)
    that the HTTP layer makes absolute. ``headers`` must be sent exactly as given.
    """

    method: str
    url: str
    expires_at: datetime
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self, url: str | None = None) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": url or self.url,
            "headers": dict(self.headers),
            "expires_at": isoformat(self.expires_at),
        }


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    content_type: str | None  # None when the storage does not keep one


class ObjectStorage(abc.ABC):
    #: "s3" or "local"
    backend: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; create the bucket (or directory) when configured to."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Harmless twice."""

    @abc.abstractmethod
    async def presign_upload(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> SignedRequest:
        """A PUT of exactly ``size`` bytes of ``content_type`` to ``key``."""

    @abc.abstractmethod
    async def presign_download(
        self, key: str, *, content_type: str, filename: str, inline: bool, expires_in: int
    ) -> SignedRequest:
        """A GET of ``key`` answered with this ``Content-Type`` and ``Content-Disposition``."""

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size and type, or None when there is no object."""

    @abc.abstractmethod
    async def read_start(self, key: str, length: int) -> bytes:
        """Up to ``length`` first bytes of the object (b"" when there is none)."""

    @abc.abstractmethod
    async def copy(self, source: str, destination: str) -> bool:
        """Copy the object at ``source`` to ``destination`` (replacing what is there); False
        when there is no object at ``source``.

        The copy is one whole object that was at ``source``, type included, and stays as it
        is: writes to ``source`` afterwards (a signed PUT still valid) do not reach it.
        """

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete the object; a missing object is not an error."""


def content_disposition(filename: str, *, inline: bool) -> str:
    """``inline``/``attachment`` with an ASCII ``filename`` and an RFC 5987 ``filename*``."""
    ascii_name = "".join(
        ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_"
        for ch in unicodedata.normalize("NFKD", filename)
        if not unicodedata.combining(ch)
    ) or "file"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
