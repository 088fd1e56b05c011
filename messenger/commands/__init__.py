"""``python -m messenger COMMAND``: the server and its admin commands, one module each.

``cli`` parses the command line and runs one command (``serve`` when none is named);
``base`` is what every command shares (its exit codes, its typed failures, reading the
settings: ``./.env`` under the real environment). The commands: ``serve``, ``migrate``,
``users`` (``create-user``, ``reset-password``; the password comes from ``password_input``) and
``genconfig``.
"""
