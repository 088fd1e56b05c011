"""Settings from environment variables. See ``.env.example`` for the full list."""

from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
