"""Headless Chromium for the tests: found (or installed with apt-get when missing and we are
root, Debian's ``chromium`` and ``chromium-driver``), and driven through chromedriver with
Selenium (its public WebDriver API only).

Each ``browser()`` is its own Chromium with a fresh profile directory: two of them are two
people on two machines (nothing shared: localStorage, cookies, connections). The flags are the
ones that work in this sandbox: without the background-networking ones Chromium's connections
are refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.debian import apt_install

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
#: Flags every test browser gets (plus a fresh ``--user-data-dir``).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,800",
)


def _find() -> tuple[str, str] | None:
    chromium = next((found for name in CHROMIUM_CANDIDATES if (found := shutil.which(name))),
                    None)
    driver = shutil.which(CHROMEDRIVER)
    return (chromium, driver) if chromium and driver else None


def ensure_chromium() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` binaries; installed with apt-get first when missing and we
    are root (``apt-get update`` first, saying so on stderr). None when neither works."""
    found = _find()
    if found is None and apt_install(list(DEBIAN_PACKAGES), "chromium/chromedriver are"):
        found = _find()
    return found


def chromium_or_skip() -> tuple[str, str]:
    found = ensure_chromium()
    if found is None:
        pytest.skip("chromium and chromedriver are not installed and could not be installed"
                    " here (apt-get install chromium chromium-driver needs root and a mirror)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install '.[test]')")
    return found


def browser(profile: Path) -> WebDriver:
    """A new headless Chromium with its own profile under ``profile``, driven by chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = chromium_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))
