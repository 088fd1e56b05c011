"""Attachment settings: storage mode, S3 credentials, media types, flags, URLs, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings
from messenger.storage import open_storage
from messenger.storage.local import LocalStorage
from messenger.storage.s3 import S3Storage


def test_defaults_keep_attachments_on_local_disk() -> None:
    settings = load_settings({"MESSENGER_DATA_DIR": "/tmp/x"})
    assert not settings.uses_s3
    assert settings.objects_dir == Path("/tmp/x/objects")
    assert settings.upload_allowed_types == (
        "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"
    )
    assert (settings.upload_max_bytes, settings.upload_url_ttl) == (26_214_400, 300)
    assert (settings.upload_orphan_age, settings.max_attachments_per_message) == (86_400, 10)
    assert not settings.s3_create_bucket and settings.public_base_url is None
    assert isinstance(open_storage(settings), LocalStorage)


@pytest.mark.parametrize(
    "env",
    [
        {"S3_ENDPOINT": "http://minio:9000"},
        {"S3_ACCESS_KEY_ID": "k", "S3_SECRET_ACCESS_KEY": "s"},
    ],
)
def test_s3_mode(env: dict[str, str]) -> None:
    settings = load_settings(env)
    assert settings.uses_s3
    assert isinstance(open_storage(settings), S3Storage)


def test_s3_settings() -> None:
    settings = load_settings({
        "S3_ENDPOINT": "http://minio:9000/", "S3_PUBLIC_ENDPOINT": "http://localhost:9000",
        "S3_REGION": "eu-west-1", "S3_BUCKET": "b1", "S3_CREATE_BUCKET": "yes",
        "UPLOAD_ALLOWED_TYPES": " Image/PNG , text/plain,image/png ",
        "PUBLIC_BASE_URL": "https://chat.example.com/",
    })
    assert settings.s3_endpoint == "http://minio:9000"
    assert settings.s3_public_endpoint == "http://localhost:9000"
    assert (settings.s3_region, settings.s3_bucket, settings.s3_create_bucket) == (
        "eu-west-1", "b1", True)
    assert settings.upload_allowed_types == ("image/png", "text/plain")
    assert settings.public_base_url == "https://chat.example.com"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"S3_ACCESS_KEY_ID": "k"}, "S3_ACCESS_KEY_ID"),
        ({"S3_SECRET_ACCESS_KEY": "s"}, "S3_ACCESS_KEY_ID"),
        ({"S3_ENDPOINT": "minio:9000"}, "S3_ENDPOINT"),
        ({"S3_PUBLIC_ENDPOINT": "ftp://x"}, "S3_PUBLIC_ENDPOINT"),
        ({"PUBLIC_BASE_URL": "chat.example.com"}, "PUBLIC_BASE_URL"),
        ({"S3_CREATE_BUCKET": "maybe"}, "S3_CREATE_BUCKET"),
        ({"UPLOAD_ALLOWED_TYPES": "image/png,not a type"}, "UPLOAD_ALLOWED_TYPES"),
        ({"UPLOAD_ALLOWED_TYPES": " , "}, "UPLOAD_ALLOWED_TYPES"),
        ({"UPLOAD_MAX_BYTES": "0"}, "UPLOAD_MAX_BYTES"),
        ({"UPLOAD_MAX_BYTES": "5368709121"}, "UPLOAD_MAX_BYTES"),
        ({"UPLOAD_URL_TTL_SECONDS": "604801"}, "UPLOAD_URL_TTL_SECONDS"),
        ({"UPLOAD_URL_TTL_SECONDS": "600", "UPLOAD_ORPHAN_AGE_SECONDS": "599"},
         "UPLOAD_ORPHAN_AGE_SECONDS"),
        ({"UPLOAD_CLEANUP_INTERVAL_SECONDS": "0"}, "UPLOAD_CLEANUP_INTERVAL_SECONDS"),
        ({"MAX_ATTACHMENTS_PER_MESSAGE": "101"}, "MAX_ATTACHMENTS_PER_MESSAGE"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}: "):
        load_settings(env)
