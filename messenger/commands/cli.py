"""The command line: ``python -m messenger [COMMAND] [ARGS]``; ``serve`` when no command is named.

``python -m messenger`` and ``python -m messenger --host H --port N`` run the server as they
always did (Procfile, Makefile, Dockerfile and scripts/cluster start it so): when the first
argument is an option other than ``-h``/``--help``, or there is none, the command is ``serve``.
``python -m messenger --help`` lists the commands; ``python -m messenger COMMAND --help``
describes one. Exit codes: ``messenger.commands.base``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from messenger.commands import genconfig, migrate, serve, users
from messenger.commands.base import Command, run_command

PROG = "messenger"
DEFAULT_COMMAND = serve.COMMAND.name
COMMANDS: tuple[Command, ...] = (
    serve.COMMAND, migrate.COMMAND, users.CREATE_USER, users.RESET_PASSWORD, genconfig.COMMAND,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="The messenger server and its admin commands.",
        epilog=f"With no command: {DEFAULT_COMMAND} ('{PROG} --port 9000' is"
        f" '{PROG} {DEFAULT_COMMAND} --port 9000'). Settings come from the environment and"
        " ./.env (.env.example lists them; the environment wins).")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help,
                                  description=command.description)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def with_command(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``serve`` in front when it names no command (no argument, or an option
    other than help first)."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return [DEFAULT_COMMAND, *argv]
    return list(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(with_command(sys.argv[1:] if argv is None else argv))
    return run_command(PROG, args.run, args)
