"""Every setting comes from an environment variable; ``.env.example`` lists them with defaults.

``load_settings`` validates everything up front and raises ``ConfigError`` with one line naming
the variable, so a bad deployment fails at start and not on the first request.

A ``.env`` file in the working directory is read by the commands (``python -m messenger ...``,
``scripts/migrate``) before the settings, under the real environment: ``config/env_file.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_JWT_SECRET = "local-dev-secret-do-not-use-in-production"
ENVIRONMENTS = ("local", "test", "development", "staging", "production")
#: ``LOG_FORMAT``: ``text`` (the default; ``time LEVEL logger: message``) or ``json`` (one object
#: a line: ``messenger/logs.py``).
LOG_FORMATS = ("text", "json")


#: Every ``AUTH_LIMIT_*`` rate-limit variable (API_CONTRACT.md §2 "Rate limits").
AUTH_LIMIT_VARIABLES = (
    "AUTH_LIMIT_LOGIN_PER_IP", "AUTH_LIMIT_LOGIN_FAILURES_PER_ACCOUNT",
    "AUTH_LIMIT_REGISTER_PER_IP", "AUTH_LIMIT_REGISTER_PER_EMAIL", "AUTH_LIMIT_REFRESH_PER_IP",
    "AUTH_LIMIT_REFRESH_PER_ACCOUNT", "AUTH_LIMIT_RESEND_PER_IP", "AUTH_LIMIT_RESEND_PER_ACCOUNT",
    "AUTH_LIMIT_RESET_PER_IP", "AUTH_LIMIT_RESET_PER_EMAIL", "AUTH_LIMIT_RESET_CONFIRM_PER_IP",
)
#: An environment that lifts every auth rate limit and the per-address connection cap: for
#: benchmarks and tests whose load all comes from one loopback address.
UNLIMITED_AUTH: dict[str, str] = dict.fromkeys(AUTH_LIMIT_VARIABLES, "1000000000/1")
UNLIMITED_LOAD: dict[str, str] = {**UNLIMITED_AUTH, "MAX_CONNECTIONS_PER_IP": "10000000"}


class ConfigError(Exception):
    """A missing or invalid setting. ``str(error)`` is one line naming the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    env: str
    host: str
    port: int
    #: ``GET /metrics`` only on ``HOST:METRICS_PORT`` (None: on ``PORT``; API_CONTRACT.md §4).
    metrics_port: int | None
    log_level: str
    log_format: str
    # storage
    mongo_url: str | None
    mongo_db: str
    mongo_write_concern: str | int
    mongo_timeout_ms: int
    data_dir: Path
    sqlite_synchronous: str
    # scale-out (docs/DEPLOYMENT.md): Redis routes events between processes when set
    redis_url: str | None
    redis_prefix: str
    redis_reconnect_max: float
    presence_node_ttl: float
    shutdown_drain: float
    # auth
    jwt_secret: str
    jwt_issuer: str
    jwt_audience: str
    access_token_ttl: int
    refresh_token_ttl: int
    bcrypt_rounds: int
    # auth rate limits (API_CONTRACT.md §2): (count, seconds) = at most count per seconds
    auth_limit_login_per_ip: tuple[int, float]
    auth_limit_login_failures_per_account: tuple[int, float]
    auth_limit_register_per_ip: tuple[int, float]
    auth_limit_register_per_email: tuple[int, float]
    auth_limit_refresh_per_ip: tuple[int, float]
    auth_limit_refresh_per_account: tuple[int, float]
    auth_limit_resend_per_ip: tuple[int, float]
    auth_limit_resend_per_account: tuple[int, float]
    auth_limit_reset_per_ip: tuple[int, float]
    auth_limit_reset_per_email: tuple[int, float]
    auth_limit_reset_confirm_per_ip: tuple[int, float]
    auth_limit_table_size: int
    # limits
    max_body_bytes: int
    max_message_length: int
    page_size_default: int
    page_size_max: int
    max_group_members: int
    max_chats_listed: int
    json_max_depth: int
    # connections (API_CONTRACT.md §11)
    max_connections: int
    max_connections_per_ip: int
    trusted_proxies: tuple[str, ...]
    http_header_timeout: float
    limit_log_interval: float
    ws_max_sessions_per_user: int
    # real time (API_CONTRACT.md §8)
    allowed_origins: tuple[str, ...]
    ws_max_frame_bytes: int
    ws_messages_per_second: float
    ws_burst: int
    ws_ping_interval: float
    ws_ping_timeout: float
    ws_idle_timeout: float
    ws_send_buffer_bytes: int
    ws_socket_sndbuf: int
    typing_ttl: float
    presence_grace: float
    presence_max_chat_members: int
    actor_idle_timeout: float
    gc_full_collection_interval: float
    stream_fanout_max_members: int
    stream_gap_hold: float
    event_retention: float
    resume_max_events: int
    poll_timeout_default: float
    poll_timeout_max: float
    poll_max_events: int
    send_batch_max: int
    # attachments (API_CONTRACT.md §9): S3-compatible storage, or local disk when not configured
    s3_endpoint: str | None
    s3_public_endpoint: str | None
    s3_region: str
    s3_bucket: str
    s3_access_key_id: str | None
    s3_secret_access_key: str | None
    s3_create_bucket: bool
    upload_max_bytes: int
    upload_allowed_types: tuple[str, ...]
    upload_url_ttl: int
    upload_orphan_age: int
    upload_cleanup_interval: int
    max_attachments_per_message: int
    public_base_url: str | None
    # email (API_CONTRACT.md §10): SMTP, or log + .eml files when SMTP_HOST is not set
    smtp_host: str | None
    smtp_port: int
    smtp_username: str | None
    smtp_password: str | None
    smtp_tls: str
    smtp_timeout: float
    mail_from: str
    email_verify_token_ttl: int
    password_reset_token_ttl: int
    email_resend_interval: float
    mail_poll_interval: float
    mail_lease: float
    mail_max_attempts: int
    mail_retry_base: float
    mail_retry_max: float
    digest_enabled: bool
    digest_delay: float
    digest_window: float
    digest_interval: float

    @property
    def uses_mongo(self) -> bool:
        return self.mongo_url is not None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "messenger.sqlite3"

    @property
    def uses_s3(self) -> bool:
        """S3-compatible object storage; otherwise attachments live on local disk."""
        return self.s3_endpoint is not None or self.s3_access_key_id is not None

    @property
    def uses_smtp(self) -> bool:
        """Send mail over SMTP; otherwise it is logged and written under ``outbox_dir``."""
        return self.smtp_host is not None

    @property
    def outbox_dir(self) -> Path:
        """Where log mode writes each email as an ``.eml`` file."""
        return self.data_dir / "outbox"

    @property
    def links_base_url(self) -> str:
        """The base of links in emails: ``PUBLIC_BASE_URL``, else this server's address."""
        if self.public_base_url:
            return self.public_base_url
        host = "localhost" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def objects_dir(self) -> Path:
        """Where local-disk storage keeps attachment objects."""
        return self.data_dir / "objects"


def _str(name: str, default: str | None) -> Callable[[Mapping[str, str]], str | None]:
    def read(env: Mapping[str, str]) -> str | None:
        value = env.get(name, "").strip()
        return value if value else default

    return read


def _int(name: str, default: int, low: int, high: int) -> Callable[[Mapping[str, str]], int]:
    def read(env: Mapping[str, str]) -> int:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    return read


def _float(
    name: str, default: float, low: float, high: float
) -> Callable[[Mapping[str, str]], float]:
    def read(env: Mapping[str, str]) -> float:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}: must be between {low:g} and {high:g}, got {value:g}")
        return value

    return read


RATE_COUNT_MAX = 1_000_000_000
RATE_SECONDS_MAX = 604_800.0


def _rate(name: str, default: str) -> Callable[[Mapping[str, str]], tuple[int, float]]:
    """``COUNT/SECONDS``: at most COUNT events per SECONDS (a burst of COUNT, then one more
    every SECONDS / COUNT), e.g. ``10/60``."""

    def read(env: Mapping[str, str]) -> tuple[int, float]:
        raw = env.get(name, "").strip() or default
        count, slash, seconds = (part.strip() for part in raw.partition("/"))
        try:
            value = (int(count), float(seconds)) if slash else None
        except ValueError:
            value = None
        if value is None:
            raise ConfigError(f"{name}: expected COUNT/SECONDS such as 10/60, got {raw!r}")
        if not 1 <= value[0] <= RATE_COUNT_MAX or not 0.001 <= value[1] <= RATE_SECONDS_MAX:
            raise ConfigError(
                f"{name}: COUNT must be 1..{RATE_COUNT_MAX} and SECONDS"
                f" 0.001..{RATE_SECONDS_MAX:g}, got {raw!r}"
            )
        return value

    return read


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("ALLOWED_ORIGINS", "").strip()
    origins = tuple(item.strip().rstrip("/").lower() for item in raw.split(",") if item.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(
                f"ALLOWED_ORIGINS: {origin!r} is not '*' or an http(s):// origin"
            )
    return origins


def _proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    """``TRUSTED_PROXIES``: addresses or CIDR networks whose ``X-Forwarded-For`` is believed."""
    import ipaddress

    raw = env.get("TRUSTED_PROXIES", "").strip()
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"TRUSTED_PROXIES: {item!r} is not an IP address or CIDR network"
            ) from None
    return items


def _default_max_connections() -> int:
    """Below the process's file-descriptor limit, with room for the store, logs and files."""
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1_048_576
    return max(16, soft - max(64, soft // 10))


SQLITE_SYNCHRONOUS_MODES = ("full", "normal", "extra")


def _sqlite_synchronous(env: Mapping[str, str]) -> str:
    mode = (_str("SQLITE_SYNCHRONOUS", "full")(env) or "full").lower()
    if mode not in SQLITE_SYNCHRONOUS_MODES:
        raise ConfigError(
            f"SQLITE_SYNCHRONOUS: must be one of {', '.join(SQLITE_SYNCHRONOUS_MODES)},"
            f" got {mode!r}"
        )
    return mode


def _bool(name: str, default: bool) -> Callable[[Mapping[str, str]], bool]:
    def read(env: Mapping[str, str]) -> bool:
        raw = env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")

    return read


def _url(name: str) -> Callable[[Mapping[str, str]], str | None]:
    def read(env: Mapping[str, str]) -> str | None:
        raw = env.get(name, "").strip().rstrip("/")
        if not raw:
            return None
        if not raw.startswith(("http://", "https://")) or raw in ("http:/", "https:/"):
            raise ConfigError(f"{name}: must be an http:// or https:// URL, got {raw!r}")
        return raw

    return read


# Matched with fullmatch: ``$`` would also accept a final newline.
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
DEFAULT_UPLOAD_TYPES = (
    "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain"
)


def _media_types(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("UPLOAD_ALLOWED_TYPES", "").strip() or DEFAULT_UPLOAD_TYPES
    types = tuple(dict.fromkeys(item.strip().lower() for item in raw.split(",") if item.strip()))
    for item in types:
        if not _MEDIA_TYPE.fullmatch(item):
            raise ConfigError(f"UPLOAD_ALLOWED_TYPES: {item!r} is not a type/subtype media type")
    if not types:
        raise ConfigError("UPLOAD_ALLOWED_TYPES: must list at least one media type")
    return types


def _s3_credentials(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    key_id = _str("S3_ACCESS_KEY_ID", None)(env)
    secret = _str("S3_SECRET_ACCESS_KEY", None)(env)
    if (key_id is None) != (secret is None):
        raise ConfigError("S3_ACCESS_KEY_ID: S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together")
    return key_id, secret


SMTP_TLS_MODES = ("starttls", "tls", "none")


def _smtp(env: Mapping[str, str]) -> dict[str, Any]:
    username = _str("SMTP_USERNAME", None)(env)
    password = _str("SMTP_PASSWORD", None)(env)
    if (username is None) != (password is None):
        raise ConfigError("SMTP_USERNAME: SMTP_USERNAME and SMTP_PASSWORD go together")
    mode = (_str("SMTP_TLS", "starttls")(env) or "starttls").lower()
    if mode not in SMTP_TLS_MODES:
        raise ConfigError(f"SMTP_TLS: must be one of {', '.join(SMTP_TLS_MODES)}, got {mode!r}")
    return {
        "smtp_host": _str("SMTP_HOST", None)(env),
        "smtp_port": _int("SMTP_PORT", 587, 1, 65535)(env),
        "smtp_username": username,
        "smtp_password": password,
        "smtp_tls": mode,
        "smtp_timeout": _float("SMTP_TIMEOUT_SECONDS", 30.0, 0.1, 600.0)(env),
    }


def _mail_from(env: Mapping[str, str]) -> str:
    from email.headerregistry import Address
    from email.utils import parseaddr

    raw = _str("MAIL_FROM", "messenger <no-reply@localhost>")(env) or ""
    name, address = parseaddr(raw)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c in raw for c in "\r\n"):
        raise ConfigError(f"MAIL_FROM: expected an email address like 'Name <a@b.c>', got {raw!r}")
    try:
        return str(Address(name, local, domain))
    except (ValueError, IndexError):
        raise ConfigError(f"MAIL_FROM: not a valid address: {raw!r}") from None


def _write_concern(env: Mapping[str, str]) -> str | int:
    raw = env.get("MONGO_WRITE_CONCERN", "").strip() or "majority"
    if raw == "majority":
        return raw
    if raw.isdigit():
        return int(raw)
    raise ConfigError(f"MONGO_WRITE_CONCERN: expected 'majority' or a number, got {raw!r}")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings; raise ``ConfigError`` naming the first bad variable."""
    env = os.environ if env is None else env
    mode = (_str("ENV", "local")(env) or "local").lower()
    if mode not in ENVIRONMENTS:
        raise ConfigError(f"ENV: must be one of {', '.join(ENVIRONMENTS)}, got {mode!r}")

    secret = _str("JWT_SECRET", DEFAULT_JWT_SECRET)(env) or DEFAULT_JWT_SECRET
    if mode != "local":
        if secret == DEFAULT_JWT_SECRET:
            raise ConfigError("JWT_SECRET: the default secret is only allowed with ENV=local")
        if len(secret.encode()) < 32:
            raise ConfigError("JWT_SECRET: must be at least 32 bytes outside ENV=local")

    mongo_url = _str("MONGO_URL", None)(env)
    if mongo_url is not None and not mongo_url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("MONGO_URL: must start with mongodb:// or mongodb+srv://")

    redis_url = _str("REDIS_URL", None)(env)
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL: must start with redis://, rediss:// or unix://")
    prefix = _str("REDIS_PREFIX", "messenger")(env) or ""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", prefix):
        raise ConfigError("REDIS_PREFIX: 1-64 letters, digits, '_', '.' or '-'")

    log_level = (_str("LOG_LEVEL", "INFO")(env) or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    log_format = (_str("LOG_FORMAT", "text")(env) or "text").lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"LOG_FORMAT: must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")

    s3_key_id, s3_secret = _s3_credentials(env)
    values: dict[str, Any] = {
        "env": mode,
        "host": _str("HOST", "127.0.0.1")(env),
        "port": _int("PORT", 8000, 0, 65535)(env),
        "metrics_port": _int("METRICS_PORT", 0, 1, 65535)(env) or None,
        "log_level": log_level,
        "log_format": log_format,
        "mongo_url": mongo_url,
        "mongo_db": _str("MONGO_DB", "messenger")(env),
        "mongo_write_concern": _write_concern(env),
        "mongo_timeout_ms": _int("MONGO_TIMEOUT_MS", 5000, 100, 120_000)(env),
        "data_dir": Path(_str("MESSENGER_DATA_DIR", "var")(env) or "var"),
        "sqlite_synchronous": _sqlite_synchronous(env),
        "redis_url": redis_url,
        "redis_prefix": _str("REDIS_PREFIX", "messenger")(env),
        "redis_reconnect_max": _float("REDIS_RECONNECT_MAX_SECONDS", 5.0, 0.1, 300.0)(env),
        "presence_node_ttl": _float("PRESENCE_NODE_TTL_SECONDS", 15.0, 0.5, 30.0)(env),
        "shutdown_drain": _float("SHUTDOWN_DRAIN_SECONDS", 1.0, 0.0, 60.0)(env),
        "jwt_secret": secret,
        "jwt_issuer": _str("JWT_ISSUER", "messenger")(env),
        "jwt_audience": _str("JWT_AUDIENCE", "messenger-clients")(env),
        "access_token_ttl": _int("ACCESS_TOKEN_TTL_SECONDS", 900, 30, 86_400)(env),
        "refresh_token_ttl": _int("REFRESH_TOKEN_TTL_SECONDS", 2_592_000, 60, 31_536_000)(env),
        "bcrypt_rounds": _int("BCRYPT_ROUNDS", 12, 4, 16)(env),
        "auth_limit_login_per_ip": _rate("AUTH_LIMIT_LOGIN_PER_IP", "10/60")(env),
        "auth_limit_login_failures_per_account": _rate("AUTH_LIMIT_LOGIN_FAILURES_PER_ACCOUNT",
                                                       "100/3600")(env),
        "auth_limit_register_per_ip": _rate("AUTH_LIMIT_REGISTER_PER_IP", "20/3600")(env),
        "auth_limit_register_per_email": _rate("AUTH_LIMIT_REGISTER_PER_EMAIL", "5/3600")(env),
        "auth_limit_refresh_per_ip": _rate("AUTH_LIMIT_REFRESH_PER_IP", "120/60")(env),
        "auth_limit_refresh_per_account": _rate("AUTH_LIMIT_REFRESH_PER_ACCOUNT", "30/60")(env),
        "auth_limit_resend_per_ip": _rate("AUTH_LIMIT_RESEND_PER_IP", "10/3600")(env),
        "auth_limit_resend_per_account": _rate("AUTH_LIMIT_RESEND_PER_ACCOUNT", "5/3600")(env),
        "auth_limit_reset_per_ip": _rate("AUTH_LIMIT_RESET_PER_IP", "10/3600")(env),
        "auth_limit_reset_per_email": _rate("AUTH_LIMIT_RESET_PER_EMAIL", "5/3600")(env),
        "auth_limit_reset_confirm_per_ip": _rate("AUTH_LIMIT_RESET_CONFIRM_PER_IP",
                                                 "10/3600")(env),
        "auth_limit_table_size": _int("AUTH_LIMIT_TABLE_SIZE", 10_000, 1, 10_000_000)(env),
        "max_body_bytes": _int("MAX_BODY_BYTES", 65_536, 1024, 10_485_760)(env),
        "max_message_length": _int("MAX_MESSAGE_LENGTH", 4000, 1, 65_536)(env),
        "page_size_default": _int("PAGE_SIZE_DEFAULT", 50, 1, 1000)(env),
        "page_size_max": _int("PAGE_SIZE_MAX", 200, 1, 1000)(env),
        "max_group_members": _int("MAX_GROUP_MEMBERS", 1000, 2, 100_000)(env),
        "max_chats_listed": _int("MAX_CHATS_LISTED", 500, 1, 10_000)(env),
        "json_max_depth": _int("JSON_MAX_DEPTH", 32, 2, 256)(env),
        "max_connections": _int("MAX_CONNECTIONS", 0, 0, 10_000_000)(env)
        or _default_max_connections(),
        "max_connections_per_ip": _int("MAX_CONNECTIONS_PER_IP", 1000, 1, 10_000_000)(env),
        "trusted_proxies": _proxies(env),
        "http_header_timeout": _float("HTTP_HEADER_TIMEOUT_SECONDS", 10.0, 0.1, 3600.0)(env),
        "limit_log_interval": _float("LIMIT_LOG_INTERVAL_SECONDS", 10.0, 0.1, 86_400.0)(env),
        "ws_max_sessions_per_user": _int("WS_MAX_SESSIONS_PER_USER", 16, 1, 100_000)(env),
        "allowed_origins": _origins(env),
        "ws_max_frame_bytes": _int("WS_MAX_FRAME_BYTES", 65_536, 1024, 1_048_576)(env),
        "ws_messages_per_second": _float("WS_MESSAGES_PER_SECOND", 20.0, 0.1, 10_000.0)(env),
        "ws_burst": _int("WS_BURST", 60, 1, 100_000)(env),
        "ws_ping_interval": _float("WS_PING_INTERVAL_SECONDS", 20.0, 0.1, 3600.0)(env),
        "ws_ping_timeout": _float("WS_PING_TIMEOUT_SECONDS", 20.0, 0.1, 3600.0)(env),
        "ws_idle_timeout": _float("WS_IDLE_TIMEOUT_SECONDS", 120.0, 0.5, 86_400.0)(env),
        "ws_send_buffer_bytes": _int("WS_SEND_BUFFER_BYTES", 1_048_576, 4096, 1 << 30)(env),
        "ws_socket_sndbuf": _int("WS_SOCKET_SNDBUF_BYTES", 262_144, 0, 1 << 30)(env),
        "typing_ttl": _float("TYPING_TTL_SECONDS", 6.0, 0.1, 300.0)(env),
        "presence_grace": _float("PRESENCE_GRACE_SECONDS", 5.0, 0.0, 3600.0)(env),
        "presence_max_chat_members": _int("PRESENCE_MAX_CHAT_MEMBERS", 100, 2, 100_000)(env),
        "actor_idle_timeout": _float("ACTOR_IDLE_SECONDS", 60.0, 0.1, 86_400.0)(env),
        "gc_full_collection_interval": _float("GC_FULL_COLLECTION_SECONDS", 300.0, 0.0,
                                              86_400.0)(env),
        "stream_fanout_max_members": _int("STREAM_FANOUT_MAX_MEMBERS", 100, 1, 100_000)(env),
        "stream_gap_hold": _float("STREAM_GAP_HOLD_SECONDS", 0.1, 0.0, 10.0)(env),
        "event_retention": _float("EVENT_RETENTION_SECONDS", 86_400.0, 1.0, 31_536_000.0)(env),
        "resume_max_events": _int("RESUME_MAX_EVENTS", 10_000, 1, 10_000_000)(env),
        "poll_timeout_default": _float("POLL_TIMEOUT_DEFAULT_SECONDS", 25.0, 0.0, 300.0)(env),
        "poll_timeout_max": _float("POLL_TIMEOUT_MAX_SECONDS", 60.0, 0.0, 300.0)(env),
        "poll_max_events": _int("POLL_MAX_EVENTS", 500, 1, 100_000)(env),
        "send_batch_max": _int("SEND_BATCH_MAX", 100, 1, 10_000)(env),
        "s3_endpoint": _url("S3_ENDPOINT")(env),
        "s3_public_endpoint": _url("S3_PUBLIC_ENDPOINT")(env),
        "s3_region": _str("S3_REGION", "us-east-1")(env),
        "s3_bucket": _str("S3_BUCKET", "messenger-attachments")(env),
        "s3_access_key_id": s3_key_id,
        "s3_secret_access_key": s3_secret,
        "s3_create_bucket": _bool("S3_CREATE_BUCKET", False)(env),
        "upload_max_bytes": _int("UPLOAD_MAX_BYTES", 26_214_400, 1, 5_368_709_120)(env),
        "upload_allowed_types": _media_types(env),
        "upload_url_ttl": _int("UPLOAD_URL_TTL_SECONDS", 300, 10, 604_800)(env),
        "upload_orphan_age": _int("UPLOAD_ORPHAN_AGE_SECONDS", 86_400, 10, 31_536_000)(env),
        "upload_cleanup_interval": _int("UPLOAD_CLEANUP_INTERVAL_SECONDS", 600, 1, 86_400)(env),
        "max_attachments_per_message": _int("MAX_ATTACHMENTS_PER_MESSAGE", 10, 1, 100)(env),
        "public_base_url": _url("PUBLIC_BASE_URL")(env),
        **_smtp(env),
        "mail_from": _mail_from(env),
        "email_verify_token_ttl": _int("EMAIL_VERIFY_TOKEN_TTL_SECONDS", 172_800, 60,
                                       2_592_000)(env),
        "password_reset_token_ttl": _int("PASSWORD_RESET_TOKEN_TTL_SECONDS", 3600, 60,
                                         86_400)(env),
        "email_resend_interval": _float("EMAIL_RESEND_INTERVAL_SECONDS", 60.0, 0.0,
                                        86_400.0)(env),
        "mail_poll_interval": _float("MAIL_POLL_INTERVAL_SECONDS", 5.0, 0.05, 3600.0)(env),
        "mail_lease": _float("MAIL_LEASE_SECONDS", 300.0, 1.0, 86_400.0)(env),
        "mail_max_attempts": _int("MAIL_MAX_ATTEMPTS", 12, 1, 1000)(env),
        "mail_retry_base": _float("MAIL_RETRY_BASE_SECONDS", 30.0, 0.01, 86_400.0)(env),
        "mail_retry_max": _float("MAIL_RETRY_MAX_SECONDS", 3600.0, 0.01, 604_800.0)(env),
        "digest_enabled": _bool("DIGEST_ENABLED", True)(env),
        "digest_delay": _float("DIGEST_DELAY_SECONDS", 900.0, 0.0, 604_800.0)(env),
        "digest_window": _float("DIGEST_WINDOW_SECONDS", 21_600.0, 0.0, 2_592_000.0)(env),
        "digest_interval": _float("DIGEST_INTERVAL_SECONDS", 30.0, 0.05, 3600.0)(env),
    }
    if values["mail_lease"] <= 2 * values["smtp_timeout"]:
        raise ConfigError("MAIL_LEASE_SECONDS: must be more than 2 x SMTP_TIMEOUT_SECONDS")
    if values["mail_retry_max"] < values["mail_retry_base"]:
        raise ConfigError("MAIL_RETRY_MAX_SECONDS: must not be less than MAIL_RETRY_BASE_SECONDS")
    if values["upload_orphan_age"] < values["upload_url_ttl"]:
        raise ConfigError("UPLOAD_ORPHAN_AGE_SECONDS: must not be less than UPLOAD_URL_TTL_SECONDS")
    if values["poll_timeout_default"] > values["poll_timeout_max"]:
        raise ConfigError("POLL_TIMEOUT_DEFAULT_SECONDS: must not exceed POLL_TIMEOUT_MAX_SECONDS")
    if values["metrics_port"] is not None and values["metrics_port"] == values["port"]:
        raise ConfigError("METRICS_PORT: must differ from PORT")
    if values["page_size_default"] > values["page_size_max"]:
        raise ConfigError("PAGE_SIZE_DEFAULT: must not exceed PAGE_SIZE_MAX")
    return Settings(**values)
