"""A real browser for the dashboard tests: Debian's Chromium, driven by Playwright.

Playwright cannot download its own browser on these machines, so the tests use the
distribution's ``chromium`` package, installing it with apt-get when it is absent (the
test machines run as root); nothing is skipped for want of a browser.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

FLAGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_executable() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.fail("the browser tests need Debian's Chromium: run `apt-get install chromium` as root")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:  # a stale package index: refresh it once
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=900)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, "apt-get install chromium failed:\n" + (done.stdout + done.stderr)[-3000:]
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but no `chromium` is on PATH"
    return found


@contextlib.contextmanager
def launched() -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser), closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = chromium_executable()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
