"""What every command shares: exit codes, typed failures, and reading its settings.

Exit codes: ``0`` done; ``1`` the command failed (a storage error, an email already taken, no
such account); ``2`` a usage or configuration error (argparse's own code for bad arguments, a
value the registration rules refuse, a bad setting or ``.env`` line); ``130`` interrupted
(Ctrl-C, e.g. at a password prompt). A failure prints one line, ``<prog>: <what went wrong>``,
on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from config import ConfigError, Settings, load_settings
from config.env_file import load_env_file
from messenger import logs

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class CommandError(Exception):
    """The command could not do its work; ``str(error)`` is the one line to print."""

    exit_code = EXIT_FAILURE


class UsageError(CommandError):
    """Bad arguments, input or configuration: nothing was attempted."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its name, one line of help, its arguments and what it runs."""

    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def load_config(*, configure_logging: bool = True) -> Settings:
    """The settings: ``./.env`` (``config.env_file``) under the real environment, validated;
    then logging as ``LOG_LEVEL`` and ``LOG_FORMAT`` say. ``UsageError`` for a bad setting."""
    try:
        load_env_file()
        settings = load_settings()
    except ConfigError as exc:
        raise UsageError(f"configuration error: {exc}") from None
    if configure_logging:
        logs.configure(settings.log_level, settings.log_format)
    return settings


def run_command(prog: str, run: Callable[[argparse.Namespace], int],
                args: argparse.Namespace) -> int:
    """Run one command: its exit code, or the failure's (printed as ``prog: message``)."""
    try:
        return run(args)
    except CommandError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
