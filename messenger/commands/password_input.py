"""Where an admin command gets a password: standard input, or a prompt on the terminal.

Never from an argument, which every user of the machine could read in ``ps``.

* ``--password-stdin``: everything on standard input, less one final line break (``\\n`` or
  ``\\r\\n``), so ``printf '%s' "$PW" | ...`` and ``echo "$PW" | ...`` both work;
* otherwise, when standard input is a terminal: ``getpass`` asks twice (no echo) and the two
  must match;
* otherwise: a ``UsageError`` saying to use ``--password-stdin`` (nothing waits for a prompt
  nobody sees).
"""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

from messenger.commands.base import UsageError


def read_password(*, from_stdin: bool, stdin: TextIO | None = None) -> str:
    stdin = stdin or sys.stdin
    if from_stdin:
        data = stdin.read()
        return data.removesuffix("\n").removesuffix("\r")
    if not stdin.isatty():
        raise UsageError("standard input is not a terminal to ask for the password on;"
                         " pipe it in with --password-stdin")
    try:
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Password (again): ")
    except EOFError:
        raise UsageError("no password given") from None
    if first != second:
        raise UsageError("the two passwords differ")
    return first
