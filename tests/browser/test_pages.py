"""The pages under /ui/ in a real Chromium, against a real server: sign-in
through the labelled field, the list and its filters, one relationship
through its history (slider, deep links, diagram), the evidence download
(verified with `mentorflow evidence verify`), redaction for an auditor,
program scopes, sign-out, program health; on every page no request leaves
the origin, no console error or CSP violation, no serious or critical axe
violation, and no horizontal scroll at 375 px."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from axe_playwright_python.async_playwright import Axe

from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, TO_CULTIVATION, open_relationship, post, walk
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = [pytest.mark.db, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
SECRET = f"secret-notes-{uuid.uuid4().hex}"
"""Confidential text posted in `notes`: an auditor's page must never hold it."""
REFLECTION = TO_CULTIVATION[0][1]
REFLECTION_SECRET = str((REFLECTION or {})["notes"])


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    data_dir = tempfile.mkdtemp(prefix="mentorflow-pages-")
    with running_server(dsn, MENTORFLOW_DATA_DIR=data_dir, MENTORFLOW_RISK_INTERVAL="1") as process:
        yield process


@dataclass
class World:
    url: str
    writer: str
    auditor: str
    scoped: str
    main_id: str  # program prog-a, mentee mentee-a, in cultivation, version 11
    other_id: str  # program prog-b, mentee mentee-b, in reflection
    public_key: str = ""
    positions: dict[int, int] = field(default_factory=dict)  # version -> global position
    risky_id: str = ""  # program prog-c, mentee mentee-c: at risk for an open high concern
    concern_position: int = 0


@pytest.fixture(scope="module")
async def world(server: ServerProcess) -> AsyncIterator[World]:
    async with aiohttp.ClientSession() as session:
        admin = Api(session, server.url, ADMIN_TOKEN)
        writer = admin.as_token(await admin.token_for("writer"))
        main = await open_relationship(writer, mentee_id="mentee-a", program_id="prog-a")
        walked = await walk(writer, main["id"], TO_CULTIVATION)  # versions 2..10
        await post(
            writer,
            main["id"],
            "meeting.held",
            {"held_at": "2026-02-10T15:00:00Z", "topics": ["outline"], "notes": SECRET},
            MENTEE,
        )  # version 11
        other = await open_relationship(writer, mentee_id="mentee-b", program_id="prog-b")
        risky = await open_relationship(writer, mentee_id="mentee-c", program_id="prog-c")
        concern = await post(
            writer,
            risky["id"],
            "concern.raised",
            {"category": "wellbeing", "severity": "high", "detail": SECRET},
            MENTEE,
        )  # version 2: at risk (an open high-severity concern), the concern its evidence
        await post(writer, risky["id"], "reflection.recorded", REFLECTION, MENTEE)  # version 3
        status, key, _ = await admin.get("/v1/checkpoints/public-key")
        assert status == 200, key
        # The evidence route publishes a checkpoint itself; wait until the tree has the events.
        for _ in range(100):
            status, body, _ = await admin.get(f"/v1/relationships/{main['id']}/evidence")
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200, body
        yield World(
            url=server.url,
            writer=str(writer.token),
            auditor=await admin.token_for("auditor"),
            scoped=await admin.token_for("writer", programs=["prog-b"]),
            main_id=main["id"],
            other_id=other["id"],
            public_key=key["public_key"],
            positions={event["version"]: event["position"] for event in walked},
            risky_id=risky["id"],
            concern_position=concern["position"],
        )


class Watched:
    """A page whose every request, console error and page error is recorded."""

    def __init__(self, page: Any, origin: str):
        self.page = page
        self.origin = origin
        self.requests: list[str] = []
        self.problems: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: self.problems.append(str(error)))

    def check(self) -> None:
        assert self.requests, "the page made no request at all"
        own = (self.origin + "/", f"blob:{self.origin}/")
        elsewhere = [url for url in self.requests if not url.startswith(own)]
        assert not elsewhere, f"requests left the origin: {elsewhere}"
        assert not self.problems, self.problems  # CSP violations are console errors


async def watched(browser: Any, world: World, **options: Any) -> tuple[Any, Watched]:
    context = await browser.new_context(**options)
    page = await context.new_page()
    return context, Watched(page, world.url)


async def sign_in(page: Any, url: str, token: str) -> None:
    await page.goto(url)
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("#content").wait_for(state="visible")


AXE = Axe()


async def assert_accessible(page: Any, what: str) -> None:
    results = await AXE.run(page)
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, f"{what}: {serious}"


def at_relationship(relationship_id: str, position: int | None = None) -> re.Pattern[str]:
    """The URL a relationship link lands on. The page then rewrites it in
    place to name the version shown (`?version=N`), possibly before
    `wait_for_url` first looks, so either form must match."""
    anchor = f"#position-{position}" if position is not None else ""
    return re.compile(rf"/ui/relationships/{relationship_id}(\?version=\d+)?{anchor}$")


async def current_phase(page: Any) -> str:
    group = page.locator(".lifecycle .phase.current")
    await group.wait_for()
    assert await group.count() == 1
    return str(await group.get_attribute("data-phase"))


async def state_value(page: Any, label: str) -> str:
    dt = page.locator("#state dt", has_text=re.compile(f"^{label}$"))
    return str(await dt.locator("xpath=following-sibling::dd[1]").inner_text())


async def test_sign_in_filter_open_slide_and_deep_link(browser: Any, world: World) -> None:
    context, w = await watched(browser, world)
    page = w.page

    await page.goto(world.url + "/ui/")
    assert await page.get_by_role("heading", name="Sign in").is_visible()
    await assert_accessible(page, "sign-in")
    await sign_in(page, world.url + "/ui/", world.writer)
    await page.locator("#relationships tbody tr").first.wait_for()
    # the token stays in the tab: never in the URL or a cookie
    assert await page.evaluate("sessionStorage.getItem('mentorflow.api-token')") == world.writer
    assert world.writer not in page.url
    assert not await context.cookies()
    await assert_accessible(page, "relationships")

    # filter by mentee, then by phase: the URL follows the filters
    await page.get_by_label("Mentee").fill("mentee-a")
    await page.get_by_role("button", name="Apply filters").click()
    await page.wait_for_url(re.compile(r"mentee_id=mentee-a"))
    await page.locator("#list-status", has_text="1 relationship shown").wait_for()
    assert "mentee-a" in await page.locator("#relationships tbody").inner_text()
    await page.get_by_label("Mentee").fill("")
    await page.get_by_label("Phase").select_option("reflection")
    await page.get_by_role("button", name="Apply filters").click()
    await page.wait_for_url(re.compile(r"phase=reflection"))
    await page.locator("#relationships tbody tr", has_text="mentee-b").wait_for()
    assert "mentee-a" not in await page.locator("#relationships tbody").inner_text()
    # a filtered URL loads filtered
    await page.goto(world.url + "/ui/?program_id=prog-a")
    await page.locator("#relationships tbody tr", has_text="mentee-a").wait_for()
    assert "mentee-b" not in await page.locator("#relationships tbody").inner_text()
    assert await page.get_by_label("Program").input_value() == "prog-a"

    # open the relationship: latest version, in cultivation
    await page.get_by_role("link", name="mentee-a").click()
    await page.wait_for_url(f"**/ui/relationships/{world.main_id}*")
    await page.locator("#timeline li").nth(10).wait_for()
    assert await current_phase(page) == "cultivation"
    slider = page.get_by_label("Version", exact=True)
    assert await slider.get_attribute("type") == "range"
    assert await slider.input_value() == "11"
    await page.locator("#phase-text", has_text="version 11").wait_for()
    assert await state_value(page, "Phase") == "cultivation"
    assert "meeting.held" in await page.locator("#changed").inner_text()
    await page.locator("#verification dd.valid").wait_for()
    await assert_accessible(page, "relationship")
    # a writer may not download evidence: the API's 403, said in words
    await page.get_by_role("button", name="Download evidence bundle").click()
    await page.locator("#evidence-status", has_text="Only auditors and administrators").wait_for()
    w.problems = [p for p in w.problems if "403" not in p]

    # move the slider back with the keyboard: version 3 is identification.started
    await slider.focus()
    await page.keyboard.press("Home")
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowRight")
    await page.wait_for_url(re.compile(r"version=3$"))
    await page.locator("#phase-text", has_text="version 3:").wait_for()
    assert await current_phase(page) == "identification"
    assert await state_value(page, "Phase") == "identification"
    assert await state_value(page, "Version") == "3"
    assert "identification.started" in await page.locator("#changed").inner_text()
    assert await page.locator("#timeline li.current").get_attribute("id") == "version-3"
    # version 1: the opening, in reflection
    await page.keyboard.press("Home")
    await page.locator("#phase-text", has_text="version 1:").wait_for()
    assert await current_phase(page) == "reflection"

    # a deep link shows that version
    await page.goto(f"{world.url}/ui/relationships/{world.main_id}?version=2")
    await page.locator("#phase-text", has_text="version 2:").wait_for()
    assert await page.get_by_label("Version", exact=True).input_value() == "2"
    assert await current_phase(page) == "reflection"
    assert "reflection.recorded" in await page.locator("#changed").inner_text()
    assert await page.locator("#timeline li.current").get_attribute("id") == "version-2"

    # ?as_of= shows the version current at that moment (now: the latest)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    await page.goto(f"{world.url}/ui/relationships/{world.main_id}?as_of={now}")
    await page.locator("#phase-text", has_text="version 11:").wait_for()
    assert "as_of=" in page.url

    # an at-risk reason's evidence links name global positions: they open that event
    await page.goto(f"{world.url}/ui/relationships/{world.main_id}#position-{world.positions[4]}")
    await page.locator("#phase-text", has_text="version 4:").wait_for()
    assert await page.locator("#timeline li.evidence").get_attribute("id") == "version-4"
    assert await current_phase(page) == "identification"

    await page.goto(world.url + "/ui/stats")
    await page.locator("#funnel-table tbody tr").first.wait_for()
    assert await page.locator("#funnel-chart svg rect").count() >= 6
    await assert_accessible(page, "stats")
    w.check()
    await context.close()


async def test_auditor_sees_no_confidential_text_and_verifies_the_evidence(
    browser: Any, world: World, tmp_path: Path
) -> None:
    context, w = await watched(browser, world, accept_downloads=True)
    page = w.page
    await sign_in(page, f"{world.url}/ui/relationships/{world.main_id}", world.auditor)
    await page.locator("#timeline li").nth(10).wait_for()
    await page.locator("#phase-text", has_text="version 11").wait_for()
    assert "notes" in await page.locator("#changed").inner_text()  # named as hidden
    for relationship, version in ((world.risky_id, 2), (world.main_id, 2), (world.main_id, 11)):
        await page.goto(f"{world.url}/ui/relationships/{relationship}?version={version}")
        await page.locator("#changed dl").wait_for()
        await page.locator("#timeline-status", has_text="events").wait_for()
        html = await page.content()
        assert SECRET not in html and REFLECTION_SECRET not in html

    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download evidence bundle").click()
    download = await info.value
    assert download.suggested_filename == f"evidence-{world.main_id}.json"
    bundle = tmp_path / download.suggested_filename
    await download.save_as(bundle)
    text = bundle.read_text()
    assert SECRET not in text
    checked = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service.cli", "evidence", "verify", str(bundle),
         "--public-key", world.public_key],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("VALID")
    await page.locator("#evidence-status", has_text="Downloaded").wait_for()
    await page.goto(world.url + "/ui/?at_risk=true")  # the concern's reason, as an auditor sees it
    await page.locator("#relationships tbody tr", has_text="mentee-c").wait_for()
    assert SECRET not in await page.content()
    w.check()
    await context.close()


async def test_a_program_scoped_token_sees_its_programs_only(browser: Any, world: World) -> None:
    context, w = await watched(browser, world)
    page = w.page
    await sign_in(page, world.url + "/ui/", world.scoped)
    await page.locator("#relationships tbody tr", has_text="mentee-b").wait_for()
    assert "mentee-a" not in await page.locator("#relationships tbody").inner_text()
    await page.goto(f"{world.url}/ui/relationships/{world.main_id}")
    await page.locator("#relationship-status", has_text="404").wait_for()
    assert "mentee-a" not in await page.locator("main").inner_text()
    w.problems = [p for p in w.problems if "404" not in p]  # the refused read itself
    w.check()
    await context.close()


async def test_sign_out_forgets_the_token(browser: Any, world: World) -> None:
    context, w = await watched(browser, world)
    page = w.page
    await sign_in(page, world.url + "/ui/stats", world.writer)
    await page.locator("#funnel-table tbody tr").first.wait_for()
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("API token").wait_for()
    assert await page.evaluate("sessionStorage.getItem('mentorflow.api-token')") is None
    assert not await page.locator("#content").is_visible()
    assert await page.locator("#funnel-table tbody tr").count() == 0
    # a refused token is not kept
    await page.get_by_label("API token").fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("#sign-in-error", has_text="refused").wait_for()
    assert await page.evaluate("sessionStorage.getItem('mentorflow.api-token')") is None
    w.problems = [p for p in w.problems if "401" not in p]  # the refused sign-in itself
    w.check()
    await context.close()


async def test_every_page_fits_a_narrow_screen(browser: Any, world: World) -> None:
    context, w = await watched(browser, world, viewport={"width": 375, "height": 800})
    page = w.page
    await page.goto(world.url + "/ui/")
    await sign_in(page, world.url + "/ui/", world.writer)
    pages = {
        "/ui/": "#relationships tbody tr",
        f"/ui/relationships/{world.main_id}": "#timeline li",
        "/ui/stats": "#funnel-table tbody tr",
        "/ui/mentees/mentee-a": "#network-relationships tbody tr",
    }
    for path, ready in pages.items():
        await page.goto(world.url + path)
        await page.locator(ready).first.wait_for()
        await page.wait_for_timeout(200)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{path} scrolls sideways: {width}px"
        await assert_accessible(page, f"{path} at 375px")
    w.check()
    await context.close()


async def test_pages_send_strict_headers_and_no_inline_code(world: World) -> None:
    async with aiohttp.ClientSession() as session:
        for path in (
            "/ui/",
            f"/ui/relationships/{world.main_id}",
            "/ui/stats",
            "/ui/mentees/mentee-a",
        ):
            async with session.get(world.url + path) as response:
                assert response.status == 200
                html = await response.text()
                csp = response.headers["Content-Security-Policy"]
                assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
                assert "script-src 'self'" in csp and "style-src 'self'" in csp
                assert response.headers["X-Frame-Options"] == "DENY"
                assert response.headers["Referrer-Policy"] == "no-referrer"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
            assert not re.search(r"\sstyle=", html), "inline style attribute"
            assert "<style" not in html and "http://" not in html.replace(
                'xmlns="http://www.w3.org/2000/svg"', ""
            )
        for name, kind in (("pages.js", "javascript"), ("pages.css", "css")):
            async with session.get(f"{world.url}/ui/static/{name}") as response:
                assert response.status == 200 and kind in response.headers["Content-Type"]
        async with session.get(world.url + "/ui/static/../app.py") as response:
            assert response.status == 404
        async with session.get(world.url + "/ui/relationships/not-a-uuid") as response:
            assert response.status == 404
        async with session.get(world.url + "/openapi.json") as response:
            assert not [p for p in (await response.json())["paths"] if p.startswith("/ui")]


async def test_risk_badges_link_their_evidence_to_the_timeline(browser: Any, world: World) -> None:
    """Reasons the test writes into the API's own answer: a `detail` that looks
    like markup (shown as text), several evidence positions, and a reason
    without evidence (its badge shows the `message`)."""
    context, w = await watched(browser, world)
    page = w.page
    position = world.positions[3]

    async def with_evidence(route: Any) -> None:
        response = await route.fetch()
        body = await response.json()
        for item in body["items"]:
            if item["id"] == world.main_id:
                item["at_risk"] = True
                item["risk_reasons"] = [
                    {"code": "no_recent_meeting", "message": "no meeting lately",
                     "detail": "no meeting since <b>February</b>",
                     "evidence": [position, world.positions[5]]},
                    {"code": "stalled", "message": "the phase stalled"},
                ]  # fmt: skip
        await route.fulfill(response=response, json=body)

    await page.route(re.compile(r"/v1/relationships\?"), with_evidence)
    await sign_in(page, world.url + "/ui/?program_id=prog-a", world.writer)
    row = page.locator("#relationships tbody tr", has_text="mentee-a")
    await row.wait_for()
    badges = row.locator(".badge")
    assert await badges.count() == 2
    assert "no meeting since <b>February</b>" in await badges.first.inner_text()  # as text
    assert await row.locator("b").count() == 0
    assert "the phase stalled" in await badges.nth(1).inner_text()
    assert await badges.first.get_by_role("link").count() == 2
    await badges.first.get_by_role("link").first.click()
    await page.wait_for_url(at_relationship(world.main_id, position))
    await page.locator("#phase-text", has_text="version 3:").wait_for()
    assert await page.locator("#timeline li.evidence").get_attribute("id") == "version-3"
    assert "identification.started" in await page.locator("#changed").inner_text()
    w.check()
    await context.close()


async def test_the_list_pages_and_inline_script_is_refused(browser: Any, world: World) -> None:
    context, w = await watched(browser, world)
    page = w.page
    await sign_in(page, world.url + "/ui/?limit=1", world.writer)
    rows = page.locator("#relationships tbody tr")
    await rows.first.wait_for()
    assert await rows.count() == 1
    first = await rows.first.inner_text()
    await page.get_by_role("button", name="Next page").click()
    await page.wait_for_url(re.compile(r"cursor="))
    await page.locator("#relationships tbody tr", has_not_text=first.split()[0]).wait_for()
    assert await rows.count() == 1
    await page.get_by_role("button", name="First page").click()
    await page.locator("#relationships tbody tr", has_text=first.split()[0]).wait_for()
    assert "cursor=" not in page.url

    # the policy is in force: an injected inline script does not run, and is reported
    outcome = await page.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener("securitypolicyviolation",
                (e) => resolve({blocked: e.violatedDirective, ran: window.injected === 1}));
            const script = document.createElement("script");
            script.textContent = "window.injected = 1";
            document.body.append(script);
        })"""
    )
    assert outcome == {"blocked": "script-src-elem", "ran": False}
    w.problems = [p for p in w.problems if "Content Security Policy" not in p]  # ours
    w.check()
    await context.close()


async def test_a_risk_badge_opens_the_event_that_makes_it_true(browser: Any, world: World) -> None:
    """The risk rules' own reasons: the badge says why, and its evidence link
    opens the relationship at the event it names (the concern, version 2)."""
    context, w = await watched(browser, world)
    page = w.page
    await sign_in(page, world.url + "/ui/?program_id=prog-c&at_risk=true", world.writer)
    row = page.locator("#relationships tbody tr", has_text="mentee-c")
    await row.wait_for()
    badge = row.locator(".badge", has_text="high-severity concern")
    await badge.wait_for()
    await badge.get_by_role("link").first.click()
    await page.wait_for_url(at_relationship(world.risky_id, world.concern_position))
    await page.locator("#phase-text", has_text="version 2:").wait_for()
    assert await page.locator("#timeline li.evidence").get_attribute("id") == "version-2"
    assert "concern.raised" in await page.locator("#changed").inner_text()
    w.check()
    await context.close()


async def test_no_token_reaches_the_server_log(server: ServerProcess, world: World) -> None:
    """Run last: every page test above signed in and read with these tokens."""
    logs = server.logs()
    assert "GET" in logs or "request" in logs
    for token in (world.writer, world.auditor, world.scoped):
        assert token not in logs


async def test_a_mentees_network_from_one_of_their_relationships(
    browser: Any, world: World
) -> None:
    context, w = await watched(browser, world)
    page = w.page
    await sign_in(page, f"{world.url}/ui/relationships/{world.main_id}", world.writer)
    await page.get_by_role("link", name="The mentee's mentoring network").click()
    await page.wait_for_url("**/ui/mentees/mentee-a")
    row = page.locator("#network-relationships tbody tr").first
    await row.wait_for()
    text = await row.inner_text()
    assert "prog-a" in text and "cultivation" in text and "mentor-7" in text, text
    assert await page.locator("#mentors li").all_inner_texts() == ["mentor-7"]
    assert await page.locator("#cycles li").count() == 1
    await assert_accessible(page, "/ui/mentees/mentee-a")
    await row.get_by_role("link").click()
    await page.wait_for_url(at_relationship(world.main_id))
    # a token of another program sees none of this mentee's relationships
    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, f"{world.url}/ui/mentees/mentee-a", world.scoped)
    await page.locator("#network-status", has_text="404").wait_for()
    assert "prog-a" not in await page.locator("main").inner_text()
    w.problems = [p for p in w.problems if "404" not in p]  # the refused read itself
    w.check()
    await context.close()
