"""``python -m messenger [serve] [--host H] [--port N]``: run one server process.

The default command: ``python -m messenger --port 9000`` is ``serve --port 9000``. It runs until
SIGINT or SIGTERM and then shuts down gracefully (``messenger.app``); exit 0 then, 1 when the
store cannot be opened or the address bound, 2 for a configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses

import uvloop

from messenger.app import serve
from messenger.commands.base import EXIT_OK, Command, CommandError, load_config
from messenger.store import StoreError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to bind (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT or 8000)")


def run(args: argparse.Namespace) -> int:
    settings = load_config()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = dataclasses.replace(settings, **overrides)
    try:
        uvloop.run(serve(settings))
    except StoreError as exc:
        raise CommandError(f"storage error at start: {exc}") from None
    except OSError as exc:
        raise CommandError(f"cannot serve on {settings.host}:{settings.port}: {exc}") from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


COMMAND = Command(
    name="serve",
    help="run the server (the default command)",
    description="Run one server process until SIGINT or SIGTERM, then shut down gracefully. "
    "Settings come from the environment and ./.env (.env.example lists them); --host and "
    "--port override HOST and PORT.",
    configure=configure,
    run=run,
)
