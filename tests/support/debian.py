"""Debian packages a test needs (nginx, prometheus, chromium): installed with apt-get when they
are missing and we are root — ``apt-get update`` first, and saying so on stderr."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def apt_install(packages: list[str], what: str, timeout: float = 900) -> bool:
    """Install ``packages`` (``what`` names them on stderr); False when it cannot be tried here
    (not root, no apt-get) or a step failed."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"{what} missing: installing it with apt-get ({' '.join(packages)})", file=sys.stderr)
    for args in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        if subprocess.run(args, env=env, capture_output=True, timeout=timeout).returncode:
            return False
    return True
