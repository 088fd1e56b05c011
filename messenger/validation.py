"""Request-body parsing and field validation: plain functions, no I/O.

Every field used in a query must be a plain string or int here, so a JSON body such as
``{"email": {"$ne": null}}`` can never reach a store filter; ``$``-prefixed keys are refused
outright. Failures raise ``ValidationFailed`` naming the field.

Nesting is bounded (``JSON_MAX_DEPTH``, default 32; the top-level object is level 1): a deeper
document is refused with ``validation_error`` (``field: "body"``) whether or not it parses —
orjson itself stops at 1,024 levels, and nothing here recurses over a client's value, so no
depth reaches Python's recursion limit. The walk over a parsed value is iterative; a document
orjson refused is scanned (linearly, strings skipped) to tell "too deep" from "not JSON".
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import orjson

from messenger.errors import MalformedJson, ValidationFailed
from messenger.ids import is_valid_id

# Matched with fullmatch: ``$`` would also accept a final newline.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
EMAIL_MAX = 254
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_BYTES = 72  # bcrypt's limit
DISPLAY_NAME_MAX = 64
TITLE_MAX = 100
CLIENT_MSG_ID_MAX = 128
#: ``GET /api/users?q=``: the longest name prefix, and the page size (default, most).
SEARCH_QUERY_MAX = 64
SEARCH_LIMIT_DEFAULT = 20
SEARCH_LIMIT_MAX = 50


#: The default of the ``JSON_MAX_DEPTH`` setting (``settings.json_max_depth``).
JSON_MAX_DEPTH = 32


def parse_json_object(raw: bytes, *, max_depth: int = JSON_MAX_DEPTH) -> dict[str, Any]:
    """Decode a request body that must be a JSON object at most ``max_depth`` levels deep,
    without ``$``-prefixed keys."""
    try:
        value = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        if nesting_exceeds(raw, max_depth):
            raise too_deep("body", max_depth) from None
        raise MalformedJson("request body is not valid JSON") from None
    check_structure(value, max_depth=max_depth)
    if not isinstance(value, dict):
        raise ValidationFailed("body", "request body must be a JSON object")
    return value


def too_deep(field: str, max_depth: int) -> ValidationFailed:
    return ValidationFailed(field, f"JSON is nested deeper than {max_depth} levels")


def check_structure(value: Any, *, max_depth: int = JSON_MAX_DEPTH, field: str = "body") -> None:
    """Raise ``ValidationFailed`` if ``value`` nests deeper than ``max_depth`` (naming
    ``field``) or if any key, at any depth, starts with ``$`` (naming its dotted path).
    Iterative, so any depth is safe; the first problem in document order is reported."""
    # (path of the key, key or None in a list, value, depth of the value if a container)
    stack: list[tuple[str, str | None, Any, int]] = [("", None, value, 1)]
    while stack:
        path, key, item, depth = stack.pop()
        if key is not None:
            if key.startswith("$"):
                raise ValidationFailed(path + key, "keys starting with '$' are not allowed")
            path = f"{path}{key}."
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            raise too_deep(field, max_depth)
        if isinstance(item, dict):
            stack.extend((path, k, child, depth + 1) for k, child in reversed(item.items()))
        else:
            stack.extend((path, None, child, depth + 1) for child in reversed(item)
                         if isinstance(child, dict | list))


_BRACKET_OR_QUOTE = re.compile(rb'[][{}"]')
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)  # after a quote


def nesting_exceeds(raw: bytes | str, max_depth: int) -> bool:
    """Whether a (possibly invalid) JSON text opens more than ``max_depth`` arrays/objects
    at once, brackets inside strings aside. Linear in ``len(raw)``; stops at the first level
    past the limit, and at an unterminated string (the rest of the text is inside it)."""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    depth = 0
    position = 0
    while (found := _BRACKET_OR_QUOTE.search(data, position)) is not None:
        char = data[found.start()]
        position = found.end()
        if char == 0x22:  # '"'
            string_end = _STRING_REST.match(data, position)
            if string_end is None:
                return False
            position = string_end.end()
        elif char in (0x5B, 0x7B):  # '[' '{'
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth = max(depth - 1, 0)
    return False


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def string(
    body: dict[str, Any],
    field: str,
    *,
    min_len: int = 1,
    max_len: int,
    required: bool = True,
    strip: bool = False,
) -> str | None:
    """A string field; ``None`` only when optional and absent or null."""
    value = body.get(field)
    if value is None:
        if required:
            raise ValidationFailed(field, f"{field} is required")
        return None
    if not isinstance(value, str):
        raise ValidationFailed(field, f"{field} must be a string")
    if strip:
        value = value.strip()
    if len(value) < min_len:
        raise ValidationFailed(field, f"{field} must be at least {min_len} characters")
    if len(value) > max_len:
        raise ValidationFailed(field, f"{field} must be at most {max_len} characters")
    return value


def integer(body: dict[str, Any], field: str, *, minimum: int = 0) -> int:
    value = body.get(field)
    if value is None:
        raise ValidationFailed(field, f"{field} is required")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)  # JSON has one number type: 3.0 is the integer 3
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(field, f"{field} must be an integer")
    if value < minimum:
        raise ValidationFailed(field, f"{field} must be at least {minimum}")
    return value


def email(body: dict[str, Any]) -> str:
    """A normalised (trimmed, lower-case) email address."""
    value = string(body, "email", max_len=EMAIL_MAX, strip=True)
    assert value is not None
    if not _EMAIL.fullmatch(value):
        raise ValidationFailed("email", "email is not a valid address")
    return value.lower()


def password(body: dict[str, Any], *, check_strength: bool = True) -> str:
    value = body.get("password")
    if value is None:
        raise ValidationFailed("password", "password is required")
    if not isinstance(value, str):
        raise ValidationFailed("password", "password must be a string")
    if len(value.encode()) > PASSWORD_MAX_BYTES:
        raise ValidationFailed("password", f"password must be at most {PASSWORD_MAX_BYTES} bytes")
    if check_strength and len(value) < PASSWORD_MIN_CHARS:
        raise ValidationFailed(
            "password", f"password must be at least {PASSWORD_MIN_CHARS} characters"
        )
    if not value:
        raise ValidationFailed("password", "password is required")
    return value


def display_name(body: dict[str, Any]) -> str:
    value = string(body, "display_name", max_len=DISPLAY_NAME_MAX, strip=True)
    assert value is not None
    if _has_control_chars(value):
        raise ValidationFailed("display_name", "display_name must not contain control characters")
    return value


def optional_display_name(body: dict[str, Any]) -> str | None:
    """``display_name`` when given, with register's rules; None when absent or null."""
    if body.get("display_name") is None:
        return None
    return display_name(body)


def query_email(raw: str) -> str:
    """An ``email`` query parameter, normalised and checked as register's ``email`` field."""
    return email({"email": raw})


def search_prefix(raw: str) -> str:
    """A ``q`` query parameter: 1..``SEARCH_QUERY_MAX`` characters, as given (not trimmed)."""
    value = string({"q": raw}, "q", max_len=SEARCH_QUERY_MAX)
    assert value is not None
    return value


def object_id(value: Any, field: str) -> str:
    if not is_valid_id(value):
        raise ValidationFailed(field, f"{field} must be a 24-character hex id")
    return value


def id_list(body: dict[str, Any], field: str, *, max_items: int) -> list[str]:
    value = body.get(field)
    if value is None:
        raise ValidationFailed(field, f"{field} is required")
    if not isinstance(value, list):
        raise ValidationFailed(field, f"{field} must be a list of ids")
    if len(value) > max_items:
        raise ValidationFailed(field, f"{field} must have at most {max_items} ids")
    return [object_id(item, field) for item in value]


def choice(body: dict[str, Any], field: str, options: tuple[str, ...]) -> str:
    value = body.get(field)
    if not isinstance(value, str) or value not in options:
        raise ValidationFailed(field, f"{field} must be one of: {', '.join(options)}")
    return value


def message_text(body: dict[str, Any], max_len: int, *, optional: bool = False) -> str:
    """The text of a message. ``optional`` (a message with attachments): absent, null or
    ``""`` give ``""``; any other text follows the usual rules."""
    if optional and body.get("text") in (None, ""):
        return ""
    value = string(body, "text", max_len=max_len)
    assert value is not None
    if not value.strip():
        raise ValidationFailed("text", "text must not be blank")
    return value


def client_msg_id(body: dict[str, Any]) -> str | None:
    value = string(body, "client_msg_id", max_len=CLIENT_MSG_ID_MAX, required=False)
    if value is not None and _has_control_chars(value):
        raise ValidationFailed("client_msg_id", "client_msg_id must not contain control characters")
    return value


def query_int(raw: str | None, field: str, *, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter within ``[minimum, maximum]``."""
    if raw is None:
        return default
    raw = raw.strip()
    if not re.fullmatch(r"\d{1,16}", raw):
        raise ValidationFailed(field, f"{field} must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ValidationFailed(field, f"{field} must be between {minimum} and {maximum}")
    return value


def query_float(
    raw: str | None, field: str, *, default: float, minimum: float, maximum: float
) -> float:
    """A decimal number query parameter within ``[minimum, maximum]``."""
    if raw is None:
        return default
    raw = raw.strip()
    if not re.fullmatch(r"\d{1,6}(\.\d{1,3})?", raw):
        raise ValidationFailed(field, f"{field} must be a number of seconds")
    value = float(raw)
    if not minimum <= value <= maximum:
        raise ValidationFailed(field, f"{field} must be between {minimum:g} and {maximum:g}")
    return value


def boolean(body: dict[str, Any], field: str) -> bool:
    value = body.get(field)
    if not isinstance(value, bool):
        raise ValidationFailed(field, f"{field} must be true or false")
    return value


def attachment_ids(body: dict[str, Any], max_items: int) -> list[str]:
    """Optional ``attachment_ids``: at most ``max_items`` distinct ids (absent or null: none)."""
    if body.get("attachment_ids") is None:
        return []
    ids = id_list(body, "attachment_ids", max_items=max_items)
    if len(set(ids)) != len(ids):
        raise ValidationFailed("attachment_ids", "attachment_ids must not repeat an id")
    return ids


FILENAME_MAX = 255


def filename(body: dict[str, Any]) -> str:
    """An upload's file name: trimmed, 1..255 characters, no control characters."""
    value = string(body, "filename", max_len=FILENAME_MAX, strip=True)
    assert value is not None
    if _has_control_chars(value):
        raise ValidationFailed("filename", "filename must not contain control characters")
    return value
