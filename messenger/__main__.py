"""``python -m messenger [COMMAND] ...``: the server (``serve``, the default) and its admin
commands; ``python -m messenger --help`` lists them (``messenger/commands/``)."""

from __future__ import annotations

import sys

from messenger.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
