"""`/docs` in a real browser: it renders the whole document from the service's
own origin (no CDN, no request anywhere else), and a request tried from the
page with a token reaches the service and shows its answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = [pytest.mark.db, pytest.mark.browser]


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    with running_server(dsn) as process:
        yield process


async def test_docs_renders_offline_and_tries_a_request_with_a_token(
    browser: Any, server: ServerProcess
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    await page.goto(server.url + "/docs", wait_until="networkidle")
    await page.wait_for_selector(".opblock-summary", timeout=20_000)
    assert await page.locator(".opblock").count() >= 20  # every route is there
    assert await page.get_by_text("Mentorflow").first.is_visible()

    # Sign in with a token through Swagger UI's own dialog.
    await page.get_by_role("button", name="Authorize").first.click()
    await page.locator(".modal-ux input[type=text], .modal-ux input[type=password]").first.fill(
        ADMIN_TOKEN
    )
    await page.locator(".modal-ux .auth-btn-wrapper button.authorize").click()
    await page.locator(".modal-ux .auth-btn-wrapper button.btn-done").click()

    # Try GET /v1/tokens (admin only): the answer must be 200, so the token went along.
    operation = page.locator("#operations-administration-list_tokens")
    await operation.locator(".opblock-summary").click()
    await operation.get_by_role("button", name="Try it out").click()
    await operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    await status.wait_for(timeout=20_000)
    assert (await status.inner_text()).strip() == "200"
    body = await operation.locator(".live-responses-table .microlight").first.inner_text()
    assert '"items"' in body

    assert requested, "the page made no request at all"
    elsewhere = [url for url in requested if not url.startswith(server.url + "/")]
    assert not elsewhere, f"requests left the origin: {elsewhere}"
    assert not problems, problems
    await context.close()
