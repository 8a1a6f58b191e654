"""Debian's headless Chromium under Selenium, for the tests that look at a page.

Needs the apt packages `chromium` and `chromium-driver` (.ci/run installs
them). Without them this fails loudly, never skips: the docs page is part of
what ships. Selenium Manager is kept offline: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser")
DRIVER = "chromedriver"
MISSING = (
    "headless Chromium is needed for this test: apt-get install -y chromium chromium-driver "
    "(CI's .ci/run installs them)"
)
PAGE_LOAD_TIMEOUT = 30  # seconds, for every page load and script


def _find(names) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if found:
            return found
    return None


def missing() -> str | None:
    """Why Chromium can't run here, or None when it can."""
    if _find(CHROMIUM) is None or _find([DRIVER]) is None:
        return MISSING
    return None


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 1600):
    """A fresh Chromium profile per use, quit (and its profile removed) after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if missing():
        raise RuntimeError(MISSING)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch a browser or driver
    profile = tempfile.mkdtemp(prefix="fleet-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = _find(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(_find([DRIVER])), options=options)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        driver.set_script_timeout(PAGE_LOAD_TIMEOUT)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
