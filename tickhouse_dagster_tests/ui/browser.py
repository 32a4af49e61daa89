"""Debian's Chromium for the browser tests, driven by Playwright through `executable_path`: the
project installs the browser with apt (infra/browser/install-chromium), never `playwright
install`. Screenshots go to the git-ignored `.tickhouse/test-artifacts/`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tickhouse_dagster.settings import PROJECT_ROOT

INSTALL_CHROMIUM = PROJECT_ROOT / "infra" / "browser" / "install-chromium"
ARTIFACTS = Path(
    os.environ.get("TICKHOUSE_TEST_ARTIFACTS", PROJECT_ROOT / ".tickhouse" / "test-artifacts")
)


def chromium_path() -> str:
    """Installs Chromium when missing (a no-op otherwise) and returns its path."""
    done = subprocess.run(
        [str(INSTALL_CHROMIUM)], capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"install-chromium failed:\n{done.stderr[-3000:]}"
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in CI containers, where Chromium's sandbox refuses.
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
