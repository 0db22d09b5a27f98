"""Opens an HTML file in headless Chromium (the system's, driven by playwright) and collects script errors."""

import os
import shutil
from typing import Callable, List, Optional

import pytest


def chromium_path() -> str:
    """The system Chromium; skips the test without one, except in CI (CI=true), where it fails."""
    path = next(filter(None, (shutil.which(name) for name in ("chromium", "chromium-browser"))), None)
    if path is None:
        message = "no chromium on PATH (Debian: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def open_page(html_path: str, check: Optional[Callable] = None, screenshot: Optional[str] = None) -> List[str]:
    """Loads the file and returns its script errors (uncaught exceptions and console errors).

    Args:
      html_path: the page.
      check: called with playwright's page once loaded, for assertions on the live page.
      screenshot: a PNG to write of the whole page.
    """
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
            page.on("console", lambda message: message.type == "error" and errors.append(f"console: {message.text}"))
            # Any request leaving the file (a CDN script) fails the page: it must open offline.
            page.route("http*://**", lambda route: (errors.append(f"request: {route.request.url}"), route.abort()))
            page.goto("file://" + os.path.abspath(html_path), wait_until="load")
            if check is not None:
                check(page)
            if screenshot:
                page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    return errors
