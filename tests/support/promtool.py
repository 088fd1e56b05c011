"""promtool for the tests: found (or installed with apt-get when missing and we are root, from
Debian's ``prometheus`` package), and run on scraped ``/metrics`` text."""

from __future__ import annotations

import subprocess

from tests.support.debian import debian_binary, debian_binary_or_skip

PROMTOOL_DIRECTORIES = ["/usr/bin", "/usr/local/bin"]


def ensure_promtool() -> str | None:
    """The promtool binary; installed with apt-get first when missing and we are root."""
    return debian_binary("promtool", "prometheus", PROMTOOL_DIRECTORIES)


def promtool_or_skip() -> str:
    return debian_binary_or_skip("promtool", "prometheus", PROMTOOL_DIRECTORIES)


def check_metrics(text: bytes) -> tuple[int, str]:
    """``promtool check metrics`` on ``text``: its exit code and everything it printed."""
    result = subprocess.run([promtool_or_skip(), "check", "metrics"], input=text,
                            capture_output=True, timeout=60)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")
