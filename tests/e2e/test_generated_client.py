"""A client generated from the published `/openapi.json` by a tool nobody here
wrote (openapi-python-client) drives a whole lifecycle against the real server,
typed end to end: the document is usable as published, not only valid."""

from __future__ import annotations

import datetime
import importlib
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest

from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, TO_CONCLUDED, TO_CULTIVATION
from tests.support.server import ServerProcess

pytestmark = pytest.mark.db
PACKAGE = "mentorflow_client"  # the name docs/client.md uses


@pytest.fixture(scope="module")
def client_package(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("generated")
    spec = out / "openapi.json"
    with urllib.request.urlopen(server.url + "/openapi.json", timeout=10) as response:
        spec.write_bytes(response.read())
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(spec),
         "--output-path", str(out / PACKAGE), "--meta", "none"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # Every schema and every operation made it into the client: the generator
    # drops what it cannot type and says so with a warning.
    assert "Unable to process" not in result.stdout + result.stderr, result.stdout
    assert "will be omitted" not in result.stdout + result.stderr, result.stdout
    sys.path.insert(0, str(out))
    _generated_at[PACKAGE] = out
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


_generated_at: dict[str, Path] = {}


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def _post_model(event_type: str) -> Any:
    """``meeting.held`` -> the generated ``PostMeetingHeld``."""
    name = "Post" + "".join(p.capitalize() for p in event_type.replace("_", ".").split("."))
    return getattr(_module("models"), name)


async def test_a_generated_client_drives_a_whole_lifecycle(
    server: ServerProcess, client_package: ModuleType, api: Api
) -> None:
    models = _module("models")
    client = client_package.AuthenticatedClient(base_url=server.url, token=api.token)
    create = _module("api.relationships.create_relationship")
    post_event = _module("api.events.post_event")
    get_relationship = _module("api.relationships.get_relationship")

    async with client as client:
        opened = await create.asyncio(
            client=client,
            body=models.RelationshipCreate(mentee_id="mentee-1", program_id="generated"),
        )
        assert isinstance(opened, models.RelationshipCreated), opened
        rid: UUID = opened.id
        assert opened.phase.value == "reflection"

        for event_type, data, actor in TO_CULTIVATION:
            body = _post_model(event_type).from_dict(
                {"type": event_type, "actor": actor, **({"data": data} if data else {})}
            )
            recorded = await post_event.asyncio(rid, client=client, body=body)
            assert isinstance(recorded, models.RecordedEvent), (event_type, recorded)
            assert recorded.type_.value == event_type

        # Built from the typed models themselves, not from a dict.
        scheduled = models.PostMeetingScheduled(
            type_="meeting.scheduled",
            data=models.MeetingScheduled(
                meeting_id="m-typed",
                scheduled_for=datetime.datetime(2026, 3, 1, 15, tzinfo=datetime.UTC),
                agenda=["outline"],
            ),
            actor=models.Actor.from_dict(MENTEE),
        )
        recorded = await post_event.asyncio(rid, client=client, body=scheduled)
        assert (
            isinstance(recorded, models.RecordedEvent) and recorded.data["meeting_id"] == "m-typed"
        )

        # A refusal comes back as the typed problem, with its extra members.
        refused = await post_event.asyncio_detailed(
            rid, client=client, body=_post_model("identification.started").from_dict(
                {"type": "identification.started", "actor": MENTEE})
        )  # fmt: skip
        assert refused.status_code == 409
        assert isinstance(refused.parsed, models.Problem)
        assert refused.parsed.type_.value.endswith("invalid-transition")

        for event_type, data, actor in TO_CONCLUDED:
            body = _post_model(event_type).from_dict(
                {"type": event_type, "actor": actor, **({"data": data} if data else {})}
            )
            recorded = await post_event.asyncio(rid, client=client, body=body)
            assert isinstance(recorded, models.RecordedEvent), (event_type, recorded)

        final = await get_relationship.asyncio(rid, client=client)
        assert isinstance(final, models.Relationship), final
        assert final.phase.value == "concluded" and final.outcome == "goals_achieved"

        await _reads_are_typed(client, rid, final.version, recorded.position)


async def _reads_are_typed(client: Any, rid: UUID, version: int, position: int) -> None:
    """The read models, each asked to include the last event (``min_position``)."""
    models = _module("models")
    listed = await _module("api.relationships.list_relationships").asyncio(
        client=client, program_id="generated", min_position=position
    )
    assert isinstance(listed, models.SummaryPage)
    assert [item.id for item in listed.items] == [rid]
    assert isinstance(listed.items[0], models.Summary)

    timeline = await _module("api.audit.timeline").asyncio(
        rid, client=client, limit=500, min_position=position
    )
    assert isinstance(timeline, models.TimelinePage) and len(timeline.items) == version
    assert all(isinstance(entry, models.TimelineEntry) for entry in timeline.items)

    audit = await _module("api.audit.audit").asyncio(rid, client=client, limit=500)
    assert isinstance(audit, models.AuditPage) and len(audit.items) == version

    verified = await _module("api.audit.verify_audit").asyncio(rid, client=client)
    assert isinstance(verified, models.Verification) and verified.valid

    earlier = await _module("api.relationships.get_relationship").asyncio(
        rid, client=client, version=2
    )
    assert isinstance(earlier, models.Relationship) and earlier.phase.value == "reflection"


def test_the_typed_client_example_in_the_docs_runs(
    server: ServerProcess, client_package: ModuleType, api: Api
) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.DOTALL)
    assert len(blocks) == 2, "docs/client.md: the plain and the typed example"
    env = {**os.environ, "MENTORFLOW_URL": server.url, "MENTORFLOW_TOKEN": str(api.token),
           "PYTHONPATH": str(_generated_at[PACKAGE])}  # fmt: skip
    outputs = []
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-c", block], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0].startswith("201 ")
    lines = outputs[1].splitlines()
    assert lines[0] == "reflection.recorded is version 2"
    assert lines[1].startswith("409 reflection [") and "identification.started" in lines[1]
    assert lines[2].startswith("reflection ") and "identification.started" in lines[2]
