"""Object storage for attachments: S3-compatible (aiobotocore) or local disk, one interface."""

from __future__ import annotations

from config import Settings
from messenger.storage.base import (
    ObjectInfo,
    ObjectStorage,
    SignedRequest,
    StorageError,
    StorageUnavailable,
    content_disposition,
)

__all__ = [
    "ObjectInfo",
    "ObjectStorage",
    "SignedRequest",
    "StorageError",
    "StorageUnavailable",
    "content_disposition",
    "open_storage",
]


def open_storage(settings: Settings) -> ObjectStorage:
    """S3 when ``S3_ENDPOINT`` or ``S3_ACCESS_KEY_ID`` is set, else local disk (data dir)."""
    if settings.uses_s3:
        from messenger.storage.s3 import S3Storage

        return S3Storage(
            endpoint=settings.s3_endpoint,
            public_endpoint=settings.s3_public_endpoint,
            region=settings.s3_region,
            bucket=settings.s3_bucket,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            create_bucket=settings.s3_create_bucket,
        )
    from messenger.storage.local import LocalStorage

    return LocalStorage(settings.objects_dir, settings.jwt_secret)
