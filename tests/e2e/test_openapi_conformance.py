"""A short journey through the real server: every request body it sends and
every response it gets validates against /openapi.json, and /docs (Swagger
UI) loads only same-origin assets under a strict Content-Security-Policy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from domain import create_cipher_key
from service.http.app import openapi_document
from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, MENTOR, TO_CONCLUDED, TO_CULTIVATION
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = pytest.mark.db

DOC: dict[str, Any] = openapi_document()
TEMPLATES = [
    (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path) for path in DOC["paths"]
]


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    root = {**DOC, "__root__": schema}
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(root, default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": "urn:openapi#/__root__"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def operation(method: str, path: str) -> dict[str, Any]:
    bare = path.split("?", 1)[0]
    # a literal path wins over a template (/v1/webhooks/x vs /v1/webhooks/{id})
    if bare in DOC["paths"]:
        return dict(DOC["paths"][bare][method.lower()])
    for pattern, template in TEMPLATES:
        if pattern.match(bare):
            return dict(DOC["paths"][template][method.lower()])
    raise AssertionError(f"{method} {path} is not in the description")


class CheckedApi(Api):
    """Api whose every request body and response is checked against the document."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None) -> None:
        super().__init__(session, base, token)
        self.checked: list[tuple[str, str, int]] = []

    async def call(
        self, method: str, path: str, json: Any = None, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        op = operation(method, path)
        status, body, headers = await super().call(method, path, json, **kwargs)
        if json is not None:
            # what the service accepts the schema accepts; what its
            # validation refuses the schema refuses
            schema = _validator(op["requestBody"]["content"]["application/json"]["schema"])
            if isinstance(body, dict) and str(body.get("type", "")).endswith("validation-error"):
                assert not schema.is_valid(json), (method, path, json, body)
            elif 200 <= status < 300 or str(body.get("type", "")).endswith("guard-failed"):
                schema.validate(json)
        responses = op["responses"]
        assert str(status) in responses, (method, path, status, body)
        content = responses[str(status)].get("content", {})
        media = headers.get("Content-Type", "").split(";")[0].strip()
        if status != 204:
            assert media in content, (method, path, status, media, list(content))
            if media.endswith("json"):
                _validator(content[media]["schema"]).validate(body)
        for header in responses[str(status)].get("headers", {}):
            assert header in headers, (method, path, header)
        self.checked.append((method, path, status))
        return status, body, headers


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    """Webhooks here point at this machine and are never answered."""
    with running_server(dsn, MENTORFLOW_WEBHOOK_ALLOW_PRIVATE="1") as process:
        yield process


@pytest.fixture
async def checked(server: ServerProcess) -> AsyncIterator[CheckedApi]:
    async with aiohttp.ClientSession() as session:
        yield CheckedApi(session, server.url, ADMIN_TOKEN)


async def test_a_journey_conforms_to_the_description(checked: CheckedApi) -> None:
    admin = checked
    status, token, _ = await admin.post("/v1/tokens", {"role": "writer", "name": "conformance"})
    assert status == 201
    writer = CheckedApi(admin.session, admin.base, token["token"])
    writer.checked = admin.checked
    auditor_status, auditor, _ = await admin.post(
        "/v1/tokens", {"role": "auditor", "name": "conformance-auditor"}
    )
    assert auditor_status == 201
    await admin.get("/v1/tokens")

    status, created, _ = await writer.post(
        "/v1/relationships", {"mentee_id": "mentee-1", "program_id": "p1", "actor": MENTEE}
    )
    assert status == 201
    rid = created["id"]
    events = f"/v1/relationships/{rid}/events"
    # a validation error, an invalid transition, a guard failure, a version conflict
    assert (await writer.post(events, {"type": "meeting.held", "data": {}}))[0] in (409, 422)
    assert (await writer.post(events, {"type": "relationship.concluded", "actor": MENTEE}))[
        0
    ] == 409
    assert (await writer.post(events, {"type": "identification.started", "actor": MENTEE}))[
        0
    ] == 422
    bad_version = await writer.call(
        "POST",
        events,
        {"type": "reflection.recorded", "data": {"author_role": "mentee", "kind": "initial"}},
        headers={"If-Match": '"99"'},
    )
    assert bad_version[0] == 412
    advocacy = ("advocacy.recorded", {"kind": "introduction", "description": "d"}, MENTOR)
    for event_type, data, actor in [*TO_CULTIVATION, advocacy, *TO_CONCLUDED]:
        if event_type == "agreement.proposed":  # with what the relationship view shows of it
            data = {
                **(data or {}),
                "time_commitment": {"mentor_hours_per_month": 2, "mentee_hours_per_month": 8.5},
                "deliverables": [{"id": "d1", "description": "first paper", "kind": "manuscript"}],
            }
        body: dict[str, Any] = {"type": event_type, "actor": actor}
        if data is not None:
            body["data"] = data
        status, recorded, _ = await writer.post(events, body)
        assert status == 201, recorded
    last = recorded["position"]

    status, shown, _ = await writer.get(f"/v1/relationships/{rid}")
    assert shown["agreement"]["deliverables"][0]["kind"] == "manuscript", shown
    assert shown["advocacy"] == {"count": 1, "by_kind": {"introduction": 1}}, shown
    await writer.get(f"/v1/relationships/{rid}?version=3")
    await writer.get(events + "?limit=5")
    await writer.get("/v1/events?limit=5")
    await writer.get("/v1/relationships")
    await writer.get(f"/v1/relationships/{rid}/timeline")
    await writer.get(f"/v1/relationships/{rid}/audit")
    await writer.get(f"/v1/relationships/{rid}/audit/verify")
    await writer.get("/v1/stats/phases")
    status, network, _ = await writer.get(f"/v1/mentees/mentee-1?min_position={last}")
    assert status == 200 and network["relationships"][0]["id"] == rid, network
    await writer.get("/v1/mentees/nobody")  # 404
    await writer.get("/v1/workflow")
    await writer.get("/v1/relationships/00000000-0000-0000-0000-000000000000")
    for _ in range(100):  # the tree builder trails the log by moments
        status, _body, _ = await writer.get("/v1/proofs/consistency?first=1&second=3")
        if status == 200:
            break
        await asyncio.sleep(0.05)
    assert status == 200
    await writer.get("/v1/proofs/inclusion?position=2&tree_size=3")
    await writer.get("/v1/proofs/inclusion?position=4&tree_size=3")  # 422
    for other in (auditor["token"], None):
        reader = CheckedApi(admin.session, admin.base, other)
        reader.checked = admin.checked
        await reader.get(events)
    await writer.get("/v1/tokens")  # forbidden
    erasure = f"/v1/relationships/{rid}/erasure"
    assert (await admin.post(erasure, {"reason": "request 1"}))[0] == 409  # no cipher key
    assert (await writer.post(erasure, {"reason": "request 1"}))[0] == 403

    # verifiable history: checkpoints, the public key, evidence
    status, published, _ = await admin.post("/v1/checkpoints")
    assert status == 201, published
    await writer.get("/v1/checkpoints/latest")
    await writer.get(f"/v1/checkpoints/{published['tree_size']}")
    await writer.get("/v1/checkpoints/not-a-size")
    await writer.get("/v1/checkpoints/987654321")
    await writer.post("/v1/checkpoints")  # forbidden
    await CheckedApi(admin.session, admin.base, None).get("/v1/checkpoints/public-key")
    auditor_api = CheckedApi(admin.session, admin.base, auditor["token"])
    auditor_api.checked = admin.checked
    status, bundle, _ = await auditor_api.get(f"/v1/relationships/{rid}/evidence?since=1")
    assert status == 200 and "consistency" in bundle, bundle
    await admin.get(f"/v1/relationships/{rid}/evidence?tree_size=abc")
    await admin.get(f"/v1/relationships/{rid}/evidence?tree_size={published['tree_size']}")
    await writer.get(f"/v1/relationships/{rid}/evidence")  # forbidden
    status, check, _ = await writer.get(f"/v1/relationships/{rid}/audit/verify")
    assert status == 200 and check["checkpoint"]["included"] is True, check

    status, hook, _ = await admin.post(
        "/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "event_types": ["relationship.*"]}
    )
    assert status == 201, hook
    await admin.get("/v1/webhooks")
    await admin.get(f"/v1/webhooks/{hook['id']}")
    await admin.get(f"/v1/webhooks/{hook['id']}/deliveries")

    await admin.get("/healthz")
    await admin.get("/readyz")
    assert len(admin.checked) > 40


async def test_erasure_conforms_to_the_description(dsn: str) -> None:
    with running_server(dsn, MENTORFLOW_CIPHER_KEY=create_cipher_key()) as process:
        async with aiohttp.ClientSession() as session:
            admin = CheckedApi(session, process.url, ADMIN_TOKEN)
            status, created, _ = await admin.post(
                "/v1/relationships", {"mentee_id": "m", "mentee_name": "Ada"}
            )
            assert status == 201
            erasure = f"/v1/relationships/{created['id']}/erasure"
            assert (await admin.post(erasure, {}))[0] == 422
            assert (await admin.post(erasure, {"reason": "r", "by": "me"}))[0] == 422
            assert (await admin.post(erasure, {"reason": " "}))[0] == 422
            key = {"Idempotency-Key": "erase-1"}
            assert (await admin.post(erasure, {"reason": "ticket 9"}, headers=key))[0] == 201
            assert (await admin.post(erasure, {"reason": "ticket 9"}, headers=key))[0] == 201
            assert (await admin.post(erasure, {"reason": "again"}))[0] == 201
            unknown = "/v1/relationships/00000000-0000-0000-0000-000000000000/erasure"
            assert (await admin.post(unknown, {"reason": "r"}))[0] == 404
            status, page, _ = await admin.get(f"/v1/relationships/{created['id']}/events")
            assert status == 200 and page["items"][-1]["type"] == "personal_data.erased"
            await admin.get(f"/v1/relationships/{created['id']}")
            assert len(admin.checked) == 10


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            if found.get("src"):
                self.urls.append(str(found["src"]))
            else:
                self.inline_scripts += 1
        if tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))


EXPECTED_TYPES = {
    ".js": ("application/javascript", "text/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


async def test_docs_is_swagger_ui_from_same_origin_assets(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/docs") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            csp = response.headers["Content-Security-Policy"]
            page = await response.text()
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]
        parser = _Assets()
        parser.feed(page)
        assert parser.inline_scripts == 0
        assert any(url.endswith("swagger-ui-bundle.js") for url in parser.urls)
        assert any(url.endswith("/init.js") for url in parser.urls)
        for url in parser.urls:
            assert url.startswith("/") and not url.startswith("//"), url
            async with session.get(server.url + url) as asset:
                assert asset.status == 200, url
                suffix = url[url.rfind(".") :]
                assert asset.content_type in EXPECTED_TYPES[suffix], (url, asset.content_type)
                assert len(await asset.read()) > 0
        async with session.get(server.url + "/docs/routes") as routes:
            assert routes.status == 200
            assert "/v1/relationships/{id}/events" in await routes.text()
