"""Identifiers: 24-hex-digit ObjectId strings in every store, so ids look the same everywhere."""

from __future__ import annotations

import re

from bson import ObjectId

#: The whole string must match (``fullmatch``): ``$`` alone would also accept a final newline.
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def new_id() -> str:
    return str(ObjectId())


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _OBJECT_ID.fullmatch(value) is not None


def direct_key(user_a: str, user_b: str) -> str:
    """The key that makes a direct chat unique per unordered pair of users."""
    low, high = sorted((user_a, user_b))
    return f"{low}:{high}"
