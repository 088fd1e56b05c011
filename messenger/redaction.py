"""What of a request URI may reach a log: secrets are replaced by ``[redacted]``. No I/O.

A query parameter is a secret by its *decoded* name (``%74oken`` is ``token``, which the server
decodes the same way), and the signed grant in a local-storage path (``/api/storage/<grant>``)
is a credential too.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

SECRET_PARAMETERS = frozenset({"token", "access_token", "refresh_token"})
SECRET_PATH_PREFIXES = ("/api/storage/",)
REDACTED = "[redacted]"


def redact(uri: str) -> str:
    """``uri`` with every secret parameter value and credential path segment replaced."""
    path, sep, query = uri.partition("?")
    for prefix in SECRET_PATH_PREFIXES:
        if unquote_plus(path).startswith(prefix):
            path = prefix + REDACTED
            break
    if not sep:
        return path
    parts = []
    for part in query.split("&"):
        name = part.partition("=")[0]
        if unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            part = f"{name}={REDACTED}"
        parts.append(part)
    return path + sep + "&".join(parts)
