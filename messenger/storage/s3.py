"""S3-compatible object storage (AWS S3, MinIO) through aiobotocore.

Uploads are presigned PUTs with ``Content-Type`` and ``Content-Length`` among the signed headers,
so S3 itself refuses another type or length (403); downloads are presigned GETs that make S3
answer with the attachment's ``Content-Type`` and ``Content-Disposition``. Presigning is local
computation: it needs no round trip. ``copy`` is a server-side ``CopyObject``: S3 copies one
whole version of the source, type included, and the bytes do not pass through here. When
clients reach the storage at another address than the server (docker compose: ``minio:9000``
inside, ``localhost:9000`` outside), ``public_endpoint`` is the one put in the URLs (SigV4
signs the host).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from messenger.clock import utcnow
from messenger.storage.base import (
    ObjectInfo,
    ObjectStorage,
    SignedRequest,
    StorageError,
    StorageUnavailable,
    content_disposition,
)

log = logging.getLogger("messenger.storage")

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
#: How long ``start`` keeps trying to reach the storage to create the bucket.
START_RETRY_SECONDS = 20.0


class S3Storage(ObjectStorage):
    backend = "s3"

    def __init__(
        self,
        *,
        endpoint: str | None,
        public_endpoint: str | None,
        region: str,
        bucket: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        create_bucket: bool,
    ) -> None:
        self.endpoint = endpoint
        self.public_endpoint = public_endpoint or endpoint
        self.region = region
        self.bucket = bucket
        self._credentials = {
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        self._create_bucket = create_bucket
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._signer: Any = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._client is not None:
            return
        session = get_session()
        config = AioConfig(
            signature_version="s3v4",
            # Path-style for custom endpoints (MinIO and friends); AWS picks its own.
            s3={"addressing_style": "path" if self.endpoint else "auto"},
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    endpoint_url=self.endpoint,
                    region_name=self.region,
                    config=config,
                    **self._credentials,
                )
            )
            self._signer = self._client
            if self.public_endpoint != self.endpoint:
                self._signer = await stack.enter_async_context(
                    session.create_client(
                        "s3",
                        endpoint_url=self.public_endpoint,
                        region_name=self.region,
                        config=config,
                        **self._credentials,
                    )
                )
        except BaseException:
            await stack.aclose()
            self._client = self._signer = None
            raise
        self._stack = stack
        if self._create_bucket:
            await self._ensure_bucket()

    async def _ensure_bucket(self) -> None:
        """Create the bucket when missing, retrying while the storage is not reachable yet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_RETRY_SECONDS
        delay = 0.25
        while True:
            try:
                await self._create_if_missing()
                return
            except StorageUnavailable as exc:
                if loop.time() + delay > deadline:
                    raise StorageUnavailable(
                        f"S3 at {self.endpoint or 'AWS'}: could not create bucket "
                        f"{self.bucket!r}: {exc}"
                    ) from exc
                log.warning("S3 not reachable yet (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _create_if_missing(self) -> None:
        try:
            await self._call(lambda c: c.head_bucket(Bucket=self.bucket))
            return
        except StorageError as exc:
            if not _missing(exc):
                raise
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await self._call(lambda c: c.create_bucket(**params))
            log.info("created S3 bucket %r", self.bucket)
        except StorageError as exc:
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self._client = self._signer = None
        if stack is not None:
            await stack.aclose()

    # -- plumbing ----------------------------------------------------------------------------
    async def _call(self, op: Callable[[Any], Awaitable[Any]]) -> Any:
        client = self._client
        if client is None:
            raise StorageUnavailable("the S3 storage is not started or closed")
        try:
            return await op(client)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or _code_of(exc) in ("SlowDown", "ServiceUnavailable"):
                raise StorageUnavailable(f"s3: {exc}") from exc
            raise StorageError(f"s3: {exc}") from exc
        except (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise StorageUnavailable(f"s3: {exc}") from exc

    # -- operations --------------------------------------------------------------------------
    async def presign_upload(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> SignedRequest:
        expires_at = utcnow() + timedelta(seconds=expires_in)
        url = await self._presign(
            "put_object",
            {"Bucket": self.bucket, "Key": key, "ContentType": content_type, "ContentLength": size},
            expires_in,
        )
        return SignedRequest("PUT", url, expires_at, {"Content-Type": content_type})

    async def presign_download(
        self, key: str, *, content_type: str, filename: str, inline: bool, expires_in: int
    ) -> SignedRequest:
        expires_at = utcnow() + timedelta(seconds=expires_in)
        url = await self._presign(
            "get_object",
            {
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": content_disposition(filename, inline=inline),
            },
            expires_in,
        )
        return SignedRequest("GET", url, expires_at)

    async def _presign(self, operation: str, params: dict[str, Any], expires_in: int) -> str:
        signer = self._signer
        if signer is None:
            raise StorageUnavailable("the S3 storage is not started or closed")
        try:
            return await signer.generate_presigned_url(
                operation, Params=params, ExpiresIn=expires_in
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"s3 presign: {exc}") from exc

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            found = await self._call(lambda c: c.head_object(Bucket=self.bucket, Key=key))
        except StorageError as exc:
            if _missing(exc):
                return None
            raise
        return ObjectInfo(int(found["ContentLength"]), found.get("ContentType"))

    async def read_start(self, key: str, length: int) -> bytes:
        async def op(client: Any) -> bytes:
            found = await client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{max(length, 1) - 1}"
            )
            async with found["Body"] as body:
                return (await body.read())[:length]

        try:
            return await self._call(op)
        except StorageError as exc:
            if _missing(exc) or _code(exc) == "InvalidRange":  # no object, or an empty one
                return b""
            raise

    async def copy(self, source: str, destination: str) -> bool:
        try:
            await self._call(
                lambda c: c.copy_object(
                    Bucket=self.bucket,
                    Key=destination,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    MetadataDirective="COPY",
                )
            )
        except StorageError as exc:
            if _missing(exc):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        try:
            await self._call(lambda c: c.delete_object(Bucket=self.bucket, Key=key))
        except StorageError as exc:
            if not _missing(exc):
                raise


def _code_of(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _code(exc: StorageError) -> str:
    cause = exc.__cause__
    return _code_of(cause) if isinstance(cause, ClientError) else ""


def _missing(exc: StorageError) -> bool:
    return _code(exc) in _MISSING
