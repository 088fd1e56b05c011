"""The ``.env`` file: settings kept in a file in the working directory, under the real environment.

``load_env_file`` reads ``./.env`` (or the file ``ENV_FILE`` names, which must then exist) when
there is one, and puts every variable it sets into the process environment **unless that
variable is already set there**: the real environment always wins, an empty value included.
Putting them into the environment (not only into the settings) is what ``honcho``, Docker
Compose's ``env_file`` and python-dotenv do too; it also reaches the libraries that read the
environment themselves (botocore's ``AWS_*`` credentials). Nothing is read when there is no
file.

The syntax, parsed by ``parse_env_file`` (no I/O), is the common subset of those tools:

* blank lines, and lines whose first non-blank character is ``#``, are skipped;
* ``NAME=VALUE`` or ``export NAME=VALUE``; ``NAME`` is a letter or ``_`` then letters, digits
  or ``_``; spaces around ``NAME``, ``=`` and ``VALUE`` are dropped;
* an unquoted ``VALUE`` is the rest of the line, up to a `` #`` comment (a ``#`` after a blank);
* ``'VALUE'`` is taken literally; ``"VALUE"`` takes ``\\"``, ``\\\\``, ``\\n`` and ``\\t``
  escapes; either may be followed by a comment only;
* no ``${VAR}`` expansion and no value spanning lines: ``$`` and ``\\`` outside double quotes
  are plain characters;
* a variable set twice takes its last value.

Any other line is a ``ConfigError`` naming the file and the line number, never the value (it
may be a secret).
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path

from config.settings import ConfigError

#: The file read from the working directory when ``ENV_FILE`` is not set.
DEFAULT_ENV_FILE = ".env"
#: The variable (of the real environment only) naming another file to read.
ENV_FILE_VARIABLE = "ENV_FILE"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def parse_env_file(text: str, source: str = DEFAULT_ENV_FILE) -> dict[str, str]:
    """The variables ``text`` sets, in order; ``ConfigError`` on the first malformed line."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        stripped = line.removesuffix("\r").strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, value = _assignment(stripped, f"{source} line {number}")
        values[name] = value
    return values


def _assignment(line: str, where: str) -> tuple[str, str]:
    if line.startswith("export ") or line.startswith("export\t"):
        line = line[len("export"):].lstrip()
    name, equals, rest = line.partition("=")
    name = name.strip()
    if not equals:
        raise ConfigError(f"{where}: expected NAME=VALUE")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: {name!r} is not a variable name")
    return name, _value(rest.strip(), f"{where} ({name})")


def _value(raw: str, where: str) -> str:
    if not raw:
        return ""
    quote = raw[0]
    if quote not in "'\"":
        comment = re.search(r"\s#", raw)
        return (raw[: comment.start()] if comment else raw).rstrip()
    chars: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == quote:
            tail = raw[index + 1:].strip()
            if tail and not tail.startswith("#"):
                raise ConfigError(f"{where}: unexpected text after the closing {quote}")
            return "".join(chars)
        if quote == '"' and char == "\\" and index + 1 < len(raw):
            escaped = _ESCAPES.get(raw[index + 1])
            if escaped is not None:
                chars.append(escaped)
                index += 2
                continue
        chars.append(char)
        index += 1
    raise ConfigError(f"{where}: the value's {quote} is not closed on its line")


def env_file_path(environ: MutableMapping[str, str]) -> Path | None:
    """The file to read: ``ENV_FILE`` (which must exist), else ``./.env`` if there is one."""
    named = environ.get(ENV_FILE_VARIABLE, "").strip()
    if named:
        path = Path(named)
        if not path.is_file() and not path.is_char_device():  # /dev/null: read nothing
            raise ConfigError(f"{ENV_FILE_VARIABLE}: no such file: {named}")
        return path
    path = Path(DEFAULT_ENV_FILE)
    return path if path.is_file() else None


def load_env_file(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Set every variable of the ``.env`` file that ``environ`` (``os.environ``) does not have;
    the file read, or None when there is none. ``ConfigError`` for a malformed or unreadable
    file."""
    environ = os.environ if environ is None else environ
    path = env_file_path(environ)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    for name, value in parse_env_file(text, str(path)).items():
        environ.setdefault(name, value)
    return path
