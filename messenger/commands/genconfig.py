"""``python -m messenger genconfig``: a new ``.env`` on stdout, with a random ``JWT_SECRET``.

Every other setting of ``.env.example`` is there too, commented out at its default with the
explanation above it, so the file documents itself and uncommenting a line is all it takes to
change one. The secret is ``secrets.token_urlsafe(48)``: 64 URL-safe characters (384 random
bits), more than the 32 bytes required outside ``ENV=local``, and safe unquoted in a ``.env``.

It only prints: it never writes, so it can never overwrite a file (``> .env`` is the shell's
doing; ``set -o noclobber`` makes the shell refuse an existing one). It reads no setting, so a
broken environment does not stop it. ``.env.example`` is read from the project directory (the
checkout or image the server runs from); without it: exit 1.
"""

from __future__ import annotations

import argparse
import re
import secrets
from pathlib import Path

from messenger.commands.base import EXIT_OK, Command, CommandError

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
SECRET_VARIABLE = "JWT_SECRET"
_SETTING = re.compile(r"[A-Z][A-Z0-9_]*=")
HEADER = """\
# messenger settings, written by `python -m messenger genconfig` (from .env.example).
# Read from the working directory by every `python -m messenger` command; a variable set in the
# real environment wins over this file. Every setting but JWT_SECRET is commented out at its
# default: uncomment a line to change it. Keep this file secret (chmod 600): it holds the key
# that signs every access and refresh token.
"""


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def render(example: str, secret: str) -> str:
    """``example`` (the text of ``.env.example``) as a new ``.env``: its opening comment
    replaced by ``HEADER``, ``JWT_SECRET`` set to ``secret``, every other setting commented."""
    blocks = example.split("\n\n", 1)
    body = blocks[1] if len(blocks) == 2 and blocks[0].startswith("#") else example
    lines = []
    for line in body.splitlines():
        if line.startswith(f"{SECRET_VARIABLE}="):
            lines.append(f"{SECRET_VARIABLE}={secret}")
        elif _SETTING.match(line):
            lines.append(f"# {line}")
        else:
            lines.append(line)
    return HEADER + "\n" + "\n".join(lines) + "\n"


def configure(parser: argparse.ArgumentParser) -> None:
    """No arguments."""


def run(args: argparse.Namespace) -> int:
    try:
        example = EXAMPLE.read_text(encoding="utf-8")
    except OSError:
        raise CommandError(f"genconfig reads {EXAMPLE}, which is missing") from None
    print(render(example, new_secret()), end="")
    return EXIT_OK


COMMAND = Command(
    name="genconfig",
    help="print a new .env with a random JWT_SECRET (writes no file)",
    description="Print a new .env on standard output: a random JWT_SECRET, and every other "
    "setting commented out at its default. It writes no file: python -m messenger genconfig "
    "> .env",
    configure=configure,
    run=run,
)
