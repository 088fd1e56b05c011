"""Settings: defaults, validation, and the JWT-secret rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.settings import DEFAULT_JWT_SECRET

GOOD_SECRET = "x" * 40


def test_defaults_run_embedded_locally() -> None:
    settings = load_settings({})
    assert settings.env == "local"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.mongo_url is None and not settings.uses_mongo
    assert settings.sqlite_path == Path("var/messenger.sqlite3")
    assert settings.jwt_secret == DEFAULT_JWT_SECRET
    assert settings.max_body_bytes == 65_536
    assert (settings.page_size_default, settings.page_size_max) == (50, 200)


def test_env_file_example_lists_every_setting() -> None:
    example = (Path(__file__).parents[1] / ".env.example").read_text()
    names = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line
             and not line.startswith("#")}
    read_by_loader = {
        "ENV", "HOST", "PORT", "LOG_LEVEL", "LOG_FORMAT", "METRICS_PORT", "MONGO_URL", "MONGO_DB",
        "MONGO_WRITE_CONCERN",
        "MONGO_TIMEOUT_MS", "MESSENGER_DATA_DIR", "REDIS_URL", "REDIS_PREFIX",
        "REDIS_RECONNECT_MAX_SECONDS", "PRESENCE_NODE_TTL_SECONDS", "SHUTDOWN_DRAIN_SECONDS",
        "JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE",
        "ACCESS_TOKEN_TTL_SECONDS", "REFRESH_TOKEN_TTL_SECONDS", "BCRYPT_ROUNDS",
        # auth rate limits
        "AUTH_LIMIT_LOGIN_PER_IP", "AUTH_LIMIT_LOGIN_FAILURES_PER_ACCOUNT",
        "AUTH_LIMIT_REGISTER_PER_IP", "AUTH_LIMIT_REGISTER_PER_EMAIL", "AUTH_LIMIT_REFRESH_PER_IP",
        "AUTH_LIMIT_REFRESH_PER_ACCOUNT", "AUTH_LIMIT_RESEND_PER_IP",
        "AUTH_LIMIT_RESEND_PER_ACCOUNT",
        "AUTH_LIMIT_RESET_PER_IP", "AUTH_LIMIT_RESET_PER_EMAIL", "AUTH_LIMIT_RESET_CONFIRM_PER_IP",
        "AUTH_LIMIT_TABLE_SIZE",
        "MAX_BODY_BYTES", "MAX_MESSAGE_LENGTH", "PAGE_SIZE_DEFAULT", "PAGE_SIZE_MAX",
        "MAX_GROUP_MEMBERS", "MAX_CHATS_LISTED", "JSON_MAX_DEPTH", "SQLITE_SYNCHRONOUS",
        # connections
        "MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_IP", "TRUSTED_PROXIES",
        "HTTP_HEADER_TIMEOUT_SECONDS", "LIMIT_LOG_INTERVAL_SECONDS", "WS_MAX_SESSIONS_PER_USER",
        # real time
        "ALLOWED_ORIGINS", "WS_MAX_FRAME_BYTES", "WS_MESSAGES_PER_SECOND", "WS_BURST",
        "WS_PING_INTERVAL_SECONDS", "WS_PING_TIMEOUT_SECONDS", "WS_IDLE_TIMEOUT_SECONDS",
        "WS_SEND_BUFFER_BYTES", "WS_SOCKET_SNDBUF_BYTES", "TYPING_TTL_SECONDS",
        "PRESENCE_GRACE_SECONDS", "PRESENCE_MAX_CHAT_MEMBERS",
        "ACTOR_IDLE_SECONDS", "GC_FULL_COLLECTION_SECONDS", "STREAM_FANOUT_MAX_MEMBERS",
        "STREAM_GAP_HOLD_SECONDS",
        "EVENT_RETENTION_SECONDS", "RESUME_MAX_EVENTS", "POLL_TIMEOUT_DEFAULT_SECONDS",
        "POLL_TIMEOUT_MAX_SECONDS", "POLL_MAX_EVENTS", "SEND_BATCH_MAX",
        # attachments
        "S3_ENDPOINT", "S3_PUBLIC_ENDPOINT", "S3_REGION", "S3_BUCKET", "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY", "S3_CREATE_BUCKET", "UPLOAD_MAX_BYTES", "UPLOAD_ALLOWED_TYPES",
        "UPLOAD_URL_TTL_SECONDS", "UPLOAD_ORPHAN_AGE_SECONDS", "UPLOAD_CLEANUP_INTERVAL_SECONDS",
        "MAX_ATTACHMENTS_PER_MESSAGE", "PUBLIC_BASE_URL",
        # email
        "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_TLS",
        "SMTP_TIMEOUT_SECONDS", "MAIL_FROM", "EMAIL_VERIFY_TOKEN_TTL_SECONDS",
        "PASSWORD_RESET_TOKEN_TTL_SECONDS", "EMAIL_RESEND_INTERVAL_SECONDS",
        "MAIL_POLL_INTERVAL_SECONDS", "MAIL_LEASE_SECONDS", "MAIL_MAX_ATTEMPTS",
        "MAIL_RETRY_BASE_SECONDS", "MAIL_RETRY_MAX_SECONDS", "DIGEST_ENABLED",
        "DIGEST_DELAY_SECONDS", "DIGEST_WINDOW_SECONDS", "DIGEST_INTERVAL_SECONDS",
    }
    assert names == read_by_loader


def test_example_values_load() -> None:
    example = (Path(__file__).parents[1] / ".env.example").read_text()
    env = dict(
        line.split("=", 1) for line in example.splitlines() if "=" in line
        and not line.startswith("#")
    )
    assert load_settings(env) == load_settings({})


@pytest.mark.parametrize("env_name", ["production", "staging", "development", "test"])
def test_default_secret_refused_outside_local(env_name: str) -> None:
    with pytest.raises(ConfigError, match=r"^JWT_SECRET: .*ENV=local"):
        load_settings({"ENV": env_name})
    assert load_settings({"ENV": env_name, "JWT_SECRET": GOOD_SECRET}).env == env_name


def test_short_secret_refused_outside_local() -> None:
    with pytest.raises(ConfigError, match=r"^JWT_SECRET: .*32 bytes"):
        load_settings({"ENV": "production", "JWT_SECRET": "short"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "eighty", r"^PORT: expected an integer"),
        ("PORT", "70000", r"^PORT: must be between"),
        ("BCRYPT_ROUNDS", "3", r"^BCRYPT_ROUNDS: must be between"),
        ("MAX_BODY_BYTES", "-1", r"^MAX_BODY_BYTES: must be between"),
        ("ENV", "prod", r"^ENV: must be one of"),
        ("MONGO_URL", "http://db", r"^MONGO_URL: must start with mongodb://"),
        ("MONGO_WRITE_CONCERN", "most", r"^MONGO_WRITE_CONCERN: expected"),
        ("LOG_LEVEL", "LOUD", r"^LOG_LEVEL: must be"),
        ("PAGE_SIZE_DEFAULT", "300", r"^PAGE_SIZE_DEFAULT: must not exceed PAGE_SIZE_MAX"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({name: value})


def test_overrides_are_read() -> None:
    settings = load_settings(
        {"MONGO_URL": "mongodb://db:27017", "MONGO_DB": "chat", "MONGO_WRITE_CONCERN": "1",
         "PORT": "9001", "MESSENGER_DATA_DIR": "/tmp/m"}
    )
    assert settings.uses_mongo and settings.mongo_db == "chat"
    assert settings.mongo_write_concern == 1
    assert settings.port == 9001
    assert settings.sqlite_path == Path("/tmp/m/messenger.sqlite3")


def test_email_defaults_are_log_mode_with_links_to_this_server() -> None:
    settings = load_settings({})
    assert not settings.uses_smtp and settings.outbox_dir == Path("var/outbox")
    assert (settings.smtp_port, settings.smtp_tls) == (587, "starttls")
    assert settings.mail_from == "messenger <no-reply@localhost>"
    assert settings.links_base_url == "http://127.0.0.1:8000"
    assert load_settings({"HOST": "0.0.0.0", "PORT": "80"}).links_base_url == "http://localhost:80"
    public = load_settings({"PUBLIC_BASE_URL": "https://chat.example.com/"})
    assert public.links_base_url == "https://chat.example.com"
    smtp = load_settings({"SMTP_HOST": "mailpit", "SMTP_PORT": "1025", "SMTP_TLS": "NONE",
                          "MAIL_FROM": "Chat <chat@example.com>"})
    assert smtp.uses_smtp and (smtp.smtp_host, smtp.smtp_port, smtp.smtp_tls) == (
        "mailpit", 1025, "none")
    assert smtp.mail_from == "Chat <chat@example.com>"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMTP_TLS": "ssl"}, r"^SMTP_TLS: must be one of"),
        ({"SMTP_USERNAME": "ann"}, r"^SMTP_USERNAME: .*go together"),
        ({"MAIL_FROM": "not an address"}, r"^MAIL_FROM: "),
        ({"MAIL_FROM": "a@b.example\nBcc: x@y.example"}, r"^MAIL_FROM: "),
        ({"MAIL_LEASE_SECONDS": "10", "SMTP_TIMEOUT_SECONDS": "5"}, r"^MAIL_LEASE_SECONDS: "),
        ({"MAIL_RETRY_BASE_SECONDS": "60", "MAIL_RETRY_MAX_SECONDS": "10"},
         r"^MAIL_RETRY_MAX_SECONDS: "),
        ({"DIGEST_ENABLED": "maybe"}, r"^DIGEST_ENABLED: expected true or false"),
    ],
)
def test_invalid_email_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)
