"""Which browser origins may use this server (``ALLOWED_ORIGINS``). No I/O."""

from __future__ import annotations

from urllib.parse import urlsplit


def origin_allowed(origin: str, host: str, allowed: tuple[str, ...]) -> bool:
    """Same host as the request, or listed in ``ALLOWED_ORIGINS`` (``*`` allows any)."""
    normalized = origin.strip().rstrip("/").lower()
    if "*" in allowed or normalized in allowed:
        return True
    return urlsplit(normalized).netloc == host.lower()
