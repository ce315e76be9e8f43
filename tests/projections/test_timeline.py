"""The timeline: readable entries in order, confidential fields only for those
who may read them, and never stored in clear in the read model."""

from __future__ import annotations

import json

import pytest

from domain import REDACTED, create_cipher_key
from domain.samples import walk_to
from projections import InvalidQuery
from service.platform.settings import Settings
from service.projection_runner import ProjectionRunner
from service.relationships.codec import mapper_for
from service.relationships.read_models import ReadModels
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.projections.support import decoder, runner_for, table_text

pytestmark = pytest.mark.db

CONCLUDED_SENTENCES = [
    "Relationship opened for mentee mentee-1",
    "The mentee recorded an initial reflection (development areas: grant writing, networking)",
    "The search for a mentor started; relationship moves to identification",
    "Mentor mentor-1 proposed as a candidate (match score 0.90)",
    "Candidate mentor mentor-1 met on 2025-01-20",
    "Mentor mentor-1 selected; relationship moves to establishment",
    "Agreement version 1 proposed: 2 goals, monthly meetings, 2025-02-01 to 2026-01-31",
    "Agreement version 1 signed by the mentee",
    "Agreement version 1 signed by the mentor",
    "Relationship established; relationship moves to cultivation",
    "Meeting held on 2025-02-10 (60 min); topics: paper outline; 1 action item agreed",
    "Review started (term ended); relationship moves to refinement",
    "The mentee recorded a closing reflection",
    "Relationship concluded: goals achieved; relationship moves to concluded",
]
SECRETS = (
    "autonomy, candour",
    "written first, then discuss",
    "good first meeting",
    "learned a lot",
)


async def test_entries_read_in_order_with_their_envelope(
    store: EventStore, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    relationship = walk_to("concluded")
    saved = await repository.save(relationship)
    models = ReadModels(store, decoder(repository), runner)
    page = await models.timeline(
        relationship.id, redact=True, min_position=saved.events[-1].position
    )
    assert page is not None and page["next_cursor"] is None
    items = page["items"]
    assert [i["summary"] for i in items] == CONCLUDED_SENTENCES
    assert [i["version"] for i in items] == list(range(1, 15))
    assert [i["position"] for i in items] == [e.position for e in saved.events]
    first = items[0]
    assert first["type"] == "relationship.opened" and first["source"] == "samples"
    assert first["actor"] == {"id": "mentee-1", "role": "mentee"}
    assert first["occurred_at"] == "2025-01-06T10:00:00+00:00"
    assert first["recorded_at"] == saved.events[0].recorded_at.isoformat()
    assert first["event_id"] == str(saved.events[0].event_id)
    selected = items[5]
    assert (selected["from_phase"], selected["to_phase"]) == ("identification", "establishment")
    assert selected["data"] == {"mentor_id": "mentor-1", "mentor_consent": True}


async def test_confidential_fields_are_redacted_for_the_auditor_and_revealed_to_others(
    store: EventStore, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    relationship = walk_to("concluded")
    saved = await repository.save(relationship)
    models = ReadModels(store, decoder(repository), runner)
    position = saved.events[-1].position
    redacted = await models.timeline(relationship.id, redact=True, min_position=position)
    revealed = await models.timeline(relationship.id, redact=False)
    assert redacted is not None and revealed is not None
    reflection, full = redacted["items"][1], revealed["items"][1]
    assert reflection["data"]["values"] == REDACTED and reflection["data"]["work_style"] == REDACTED
    assert reflection["redacted"] == ["values", "work_style"]
    assert "notes" not in reflection["data"]  # not given: absent, not redacted
    assert full["data"]["values"] == "autonomy, candour" and full["redacted"] == []
    assert revealed["items"][10]["data"]["notes"] == "good first meeting"
    assert SECRETS[0] not in json.dumps(redacted)
    for plain, hidden in zip(revealed["items"], redacted["items"], strict=True):
        if not hidden["redacted"]:
            assert plain == hidden


async def test_an_entry_whose_payload_no_longer_decodes_says_so(
    store: EventStore, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    relationship = walk_to("cultivation")
    saved = await repository.save(relationship)
    await store.with_connection(
        lambda c: c.execute(
            "UPDATE events SET payload = '\\x7b'::bytea WHERE stream_id = $1 AND version = 2",
            relationship.id,
        )
    )
    models = ReadModels(store, decoder(repository), runner)
    for redact in (True, False):
        page = await models.timeline(
            relationship.id, redact=redact, min_position=saved.events[-1].position
        )
        assert page is not None
        broken = page["items"][1]
        assert broken["version"] == 2 and broken["type"] == "reflection.recorded"
        assert broken["summary"] == "reflection.recorded (stored payload does not decode)"
        assert broken["data"] == {} and broken["redacted"] == []
        assert page["items"][2]["summary"].startswith("The search for a mentor started")


async def test_encrypted_payloads_never_leak_into_the_read_models(
    store: EventStore, dsn: str
) -> None:
    settings = Settings(cipher_key=create_cipher_key())
    repository = RelationshipRepository(store, mapper_for(settings))
    runner = runner_for(store, dsn, repository)
    await runner.start()
    try:
        relationship = walk_to("concluded")
        saved = await repository.save(relationship)
        assert await runner.wait_until_projected(None, saved.events[-1].position, 10)
        for table in ("timeline_entries", "relationship_summaries", "phase_stats_relationships"):
            text = await table_text(store, table)
            assert not any(secret in text for secret in SECRETS), table
        stored = await store.read_stream(relationship.id)
        assert not any(b"autonomy" in record.payload for record in stored)  # encrypted at rest
        page = await ReadModels(store, decoder(repository), runner).timeline(
            relationship.id, redact=False
        )
        assert page is not None and page["items"][1]["data"]["values"] == SECRETS[0]
    finally:
        await runner.stop()


async def test_paging_and_unknown_relationships(
    store: EventStore, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    relationship = walk_to("concluded")
    saved = await repository.save(relationship)
    models = ReadModels(store, decoder(repository), runner)
    await runner.wait_until_projected("timeline", saved.events[-1].position, 10)
    versions: list[int] = []
    cursor = None
    while True:
        page = await models.timeline(relationship.id, redact=False, limit=4, cursor=cursor)
        assert page is not None
        versions += [item["version"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert versions == list(range(1, 15))
    assert await models.timeline(walk_to("reflection").id, redact=True) is None
    with pytest.raises(InvalidQuery):
        await models.timeline(relationship.id, redact=True, limit=1000)
