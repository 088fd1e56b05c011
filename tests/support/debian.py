"""Debian packages a test needs (nginx, prometheus, chromium): installed with apt-get when they
are missing and we are root — ``apt-get update`` first, and saying so on stderr."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


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


def debian_binary(name: str, package: str, directories: list[str]) -> str | None:
    """The ``name`` binary (looked for in ``directories``, then ``PATH``), installed from the
    Debian ``package`` first when it is missing and we are root."""
    path = os.pathsep.join([*directories, os.environ.get("PATH", "")])
    found = shutil.which(name, path=path)
    what = f"{name} is" if package == name else f"{name} (Debian's {package}) is"
    if found is None and apt_install([package], what):
        found = shutil.which(name, path=path)
    return found


def debian_binary_or_skip(name: str, package: str, directories: list[str]) -> str:
    """``debian_binary``, or a skip of the test saying why it could not be had."""
    found = debian_binary(name, package, directories)
    if found is None:
        pytest.skip(f"{name} is not installed and could not be installed here"
                    f" (apt-get install {package} needs root and a package mirror)")
    return found
