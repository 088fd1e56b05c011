"""Log output: ``LOG_FORMAT=text`` (the default) or ``json`` (API_CONTRACT.md §11 "Log format").

``text`` is what the server always wrote: ``2026-11-26 12:34:56,789 INFO messenger: ...``, the
message as formatted, with a traceback on the lines after it.

``json`` writes every record as **one** line holding one JSON object (orjson), for log
collectors:

* ``time`` (ISO 8601 UTC with milliseconds, ``2026-11-26T12:34:56.789Z``), ``level``,
  ``logger``, ``message`` (the formatted message; its newlines are escaped like every other
  character JSON escapes, so it stays on the line);
* the record's structured ``fields`` (``extra=fields(...)``; a callable is called once, when
  the line is written, so building them costs nothing in ``text``); they never replace
  ``time``, ``level`` or ``logger``; a ``message`` among them replaces the record's message
  (the access line says ``GET /api/chats/{chat_id} 200 1.2ms``, with no query string);
* ``exception``: the whole traceback as one string, when the record has one; ``stack`` for
  ``stack_info``.

What reaches a line is only what the code logs: request URIs go through
``messenger.redaction`` and the access line (``messenger.access_log``) carries no query string,
header or body.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The ``LogRecord`` attribute holding structured fields (``extra=fields(...)``).
FIELDS_ATTRIBUTE = "fields"
_FIXED_KEYS = frozenset({"time", "level", "logger"})

type Fields = Mapping[str, Any] | Callable[[], Mapping[str, Any]]


def fields(values: Fields) -> dict[str, Fields]:
    """The ``extra`` argument that attaches ``values`` to a record (JSON only)."""
    return {FIELDS_ATTRIBUTE: values}


def iso_time(created: float) -> str:
    """``created`` (epoch seconds) as ISO 8601 UTC with milliseconds and a ``Z``."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, FIELDS_ATTRIBUTE, None)
        if callable(extra):
            extra = extra()
        if isinstance(extra, Mapping):
            entry.update((key, value) for key, value in extra.items() if key not in _FIXED_KEYS)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``LOG_FORMAT`` (``text`` or ``json``)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {log_format!r}")


def configure(level: str, log_format: str, stream: IO[str] | None = None) -> None:
    """Send every log record of ``level`` and above to ``stream`` (stderr) in ``log_format``.

    Like ``logging.basicConfig``: a root logger that already has handlers is left alone."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
