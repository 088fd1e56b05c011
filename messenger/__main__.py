"""``python -m messenger [--host H] [--port N]``: run one server process.

Settings come from the environment (see .env.example); flags override HOST and PORT.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import uvloop

from config import ConfigError, load_settings
from messenger.app import serve
from messenger.store import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="messenger", description="Run the messenger server.")
    parser.add_argument("--host", help="interface to bind (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT or 8000)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"messenger: configuration error: {exc}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = dataclasses.replace(settings, **overrides)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        uvloop.run(serve(settings))
    except StoreError as exc:
        print(f"messenger: storage error at start: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"messenger: cannot serve on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
