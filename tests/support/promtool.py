"""promtool for the tests: found (or installed with apt-get when missing and we are root, from
Debian's ``prometheus`` package), and run on scraped ``/metrics`` text."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.debian import apt_install

PROMTOOL_PATH = os.pathsep.join(["/usr/bin", "/usr/local/bin", os.environ.get("PATH", "")])


def ensure_promtool() -> str | None:
    """The promtool binary; installed with apt-get first when missing and we are root."""
    found = shutil.which("promtool", path=PROMTOOL_PATH)
    if found is None and apt_install(["prometheus"], "promtool (Debian's prometheus) is"):
        found = shutil.which("promtool", path=PROMTOOL_PATH)
    return found


def promtool_or_skip() -> str:
    promtool = ensure_promtool()
    if promtool is None:
        pytest.skip("promtool is not installed and could not be installed here"
                    " (apt-get install prometheus needs root and a package mirror)")
    return promtool


def check_metrics(text: bytes) -> tuple[int, str]:
    """``promtool check metrics`` on ``text``: its exit code and everything it printed."""
    result = subprocess.run([promtool_or_skip(), "check", "metrics"], input=text,
                            capture_output=True, timeout=60)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")
