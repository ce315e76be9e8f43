"""A real Chromium (Debian's `chromium`, driven by Playwright) for page tests.

Without the browser these tests skip, unless ``MENTORFLOW_REQUIRE_BROWSER=1``
(as ``.ci/run`` sets after installing it), where its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    configured = os.environ.get("MENTORFLOW_CHROMIUM")
    if configured:
        return configured
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[object]:
    path = chromium_path()
    if path is None:
        if os.environ.get("MENTORFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium found, and MENTORFLOW_REQUIRE_BROWSER=1")
        pytest.skip("no Chromium (apt-get install -y chromium)")
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            await launched.close()
