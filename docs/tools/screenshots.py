"""Regenerate the screenshots of the web pages in docs/images/ (docs/pages.md).

    python docs/tools/screenshots.py                      # a fresh server and database
    python docs/tools/screenshots.py --url URL --token T  # a server that already runs

Without --url it starts `mentorflow serve` on a schema of its own (of
DATABASE_URL, or the embedded PostgreSQL), loads the sample data with
`mentorflow demo`, captures, and drops the schema. Captured with Playwright
in Debian's Chromium (MENTORFLOW_CHROMIUM or `chromium` on the PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.async_api import Page, async_playwright  # noqa: E402

from tests.support.database import database_url_for_tests  # noqa: E402
from tests.support.server import ADMIN_TOKEN, running_server  # noqa: E402

IMAGES = ROOT / "docs" / "images"
LONG_MENTEE = "mentee-1"
"""The demo's long relationship (a hundred-odd events in cultivation)."""


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(url + "/ui/")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("#relationships tbody tr").first.wait_for()


async def capture(url: str, token: str) -> list[Path]:
    chromium = os.environ.get("MENTORFLOW_CHROMIUM") or shutil.which("chromium")
    IMAGES.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        for width, suffix in ((1280, ""), (375, "-narrow")):
            context = await browser.new_context(viewport={"width": width, "height": 900})
            page = await context.new_page()

            async def shot(name: str, page: Page = page, suffix: str = suffix) -> None:
                path = IMAGES / f"{name}{suffix}.png"
                await page.wait_for_timeout(300)
                await page.screenshot(path=str(path), full_page=True)
                written.append(path)

            await page.goto(url + "/ui/")
            await page.get_by_label("API token").wait_for()
            await shot("sign-in")
            await sign_in(page, url, token)
            await shot("relationships")
            await page.goto(url + "/ui/?at_risk=true")
            await page.locator("#relationships tbody tr").first.wait_for()
            await shot("relationships-at-risk")
            link = page.get_by_role("link", name=LONG_MENTEE, exact=True)
            await page.goto(url + "/ui/")
            await link.wait_for()
            href = await link.get_attribute("href")
            await page.goto(f"{url}{href}?version=12")
            await page.locator("#phase-text", has_text="version 12:").wait_for()
            await page.locator("#timeline-status", has_text="events").wait_for()
            await page.locator("#verification dd").first.wait_for()
            await shot("relationship")
            await page.goto(url + "/ui/stats")
            await page.locator("#funnel-table tbody tr").first.wait_for()
            await shot("stats")
            await context.close()
        await browser.close()
    return written


def _publish_checkpoint(url: str) -> None:
    request = urllib.request.Request(
        url + "/v1/checkpoints",
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, response.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start one on a fresh schema)")
    parser.add_argument("--token", help="an API token for --url (admin or auditor)")
    args = parser.parse_args()
    if args.url:
        if not args.token:
            parser.error("--url needs --token")
        written = asyncio.run(capture(args.url.rstrip("/"), args.token))
    else:
        dsn = database_url_for_tests()
        with running_server(dsn) as server:
            env = {**os.environ, "DATABASE_URL": dsn, "MENTORFLOW_DB_SCHEMA": server.schema}
            loaded = subprocess.run(
                [sys.executable, "-m", "service.cli", "demo"],
                env=env, cwd=ROOT, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if loaded.returncode != 0:
                print(loaded.stdout + loaded.stderr, file=sys.stderr)
                return 1
            _publish_checkpoint(server.url)  # so the pages show the demo signed
            written = asyncio.run(capture(server.url, ADMIN_TOKEN))
    for path in written:
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
