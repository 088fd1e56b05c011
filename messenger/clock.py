"""Time helpers: UTC, millisecond precision (what both stores keep), ISO-8601 rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    """Current UTC time truncated to milliseconds, so every store round-trips it exactly."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def to_millis(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


def from_millis(millis: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(millis))


#: ``iso_millis``'s rendered seconds; cleared when full (a page of history shares a few seconds).
_SECONDS: dict[int, str] = {}
_SECONDS_MAX = 4096


def iso_millis(millis: int) -> str:
    """``isoformat(from_millis(millis))``, without building a datetime: the rendering of each
    whole second is kept, so a record costs a dictionary lookup and one small format."""
    seconds, rest = divmod(millis, 1000)
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()
        prefix = _SECONDS[seconds] = (_EPOCH + timedelta(seconds=seconds)).strftime(
            "%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{rest:03d}Z"


def isoformat(value: datetime) -> str:
    """``2026-11-26T12:34:56.789Z`` (C-level ``isoformat``: this runs for every rendered record)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"
