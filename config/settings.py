"""Every setting comes from an environment variable; ``.env.example`` lists them with defaults.

``load_settings`` validates everything up front and raises ``ConfigError`` with one line naming
the variable, so a bad deployment fails at start and not on the first request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_JWT_SECRET = "local-dev-secret-do-not-use-in-production"
ENVIRONMENTS = ("local", "test", "development", "staging", "production")


class ConfigError(Exception):
    """A missing or invalid setting. ``str(error)`` is one line naming the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    env: str
    host: str
    port: int
    log_level: str
    # storage
    mongo_url: str | None
    mongo_db: str
    mongo_write_concern: str | int
    mongo_timeout_ms: int
    data_dir: Path
    # auth
    jwt_secret: str
    jwt_issuer: str
    jwt_audience: str
    access_token_ttl: int
    refresh_token_ttl: int
    bcrypt_rounds: int
    # limits
    max_body_bytes: int
    max_message_length: int
    page_size_default: int
    page_size_max: int
    max_group_members: int
    max_chats_listed: int

    @property
    def uses_mongo(self) -> bool:
        return self.mongo_url is not None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "messenger.sqlite3"


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

    log_level = (_str("LOG_LEVEL", "INFO")(env) or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    values: dict[str, Any] = {
        "env": mode,
        "host": _str("HOST", "127.0.0.1")(env),
        "port": _int("PORT", 8000, 0, 65535)(env),
        "log_level": log_level,
        "mongo_url": mongo_url,
        "mongo_db": _str("MONGO_DB", "messenger")(env),
        "mongo_write_concern": _write_concern(env),
        "mongo_timeout_ms": _int("MONGO_TIMEOUT_MS", 5000, 100, 120_000)(env),
        "data_dir": Path(_str("MESSENGER_DATA_DIR", "var")(env) or "var"),
        "jwt_secret": secret,
        "jwt_issuer": _str("JWT_ISSUER", "messenger")(env),
        "jwt_audience": _str("JWT_AUDIENCE", "messenger-clients")(env),
        "access_token_ttl": _int("ACCESS_TOKEN_TTL_SECONDS", 900, 30, 86_400)(env),
        "refresh_token_ttl": _int("REFRESH_TOKEN_TTL_SECONDS", 2_592_000, 60, 31_536_000)(env),
        "bcrypt_rounds": _int("BCRYPT_ROUNDS", 12, 4, 16)(env),
        "max_body_bytes": _int("MAX_BODY_BYTES", 65_536, 1024, 10_485_760)(env),
        "max_message_length": _int("MAX_MESSAGE_LENGTH", 4000, 1, 65_536)(env),
        "page_size_default": _int("PAGE_SIZE_DEFAULT", 50, 1, 1000)(env),
        "page_size_max": _int("PAGE_SIZE_MAX", 200, 1, 1000)(env),
        "max_group_members": _int("MAX_GROUP_MEMBERS", 1000, 2, 100_000)(env),
        "max_chats_listed": _int("MAX_CHATS_LISTED", 500, 1, 10_000)(env),
    }
    if values["page_size_default"] > values["page_size_max"]:
        raise ConfigError("PAGE_SIZE_DEFAULT: must not exceed PAGE_SIZE_MAX")
    return Settings(**values)
