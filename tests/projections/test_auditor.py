"""The auditor's command line functions: replay, projections rebuild, demo."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest

from domain import REDACTED
from domain.samples import walk_to
from service import auditor
from service.platform.settings import Settings
from service.projection_runner import ProjectionRunner
from service.relationships.read_models import ReadModels
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.projections.support import decoder, dump, save_all
from workflows import PHASES

pytestmark = pytest.mark.db


@pytest.fixture
def settings(dsn: str, schema: str, store: EventStore) -> Settings:
    return Settings(database_url=dsn, db_schema=schema)


async def test_replay_shows_the_state_and_timeline_at_a_version(
    settings: Settings, repository: RelationshipRepository
) -> None:
    relationship = walk_to("concluded")
    await repository.save(relationship)
    out = io.StringIO()
    assert await auditor.replay(settings, str(relationship.id), version=6, out=out) == 0
    body = json.loads(out.getvalue())
    assert body["relationship"]["phase"] == "establishment"
    assert body["relationship"]["version"] == 6
    assert [e["version"] for e in body["timeline"]] == [1, 2, 3, 4, 5, 6]
    assert body["timeline"][1]["data"]["values"] == REDACTED  # as an auditor reads it
    assert body["timeline"][5]["summary"].endswith("relationship moves to establishment")

    out = io.StringIO()
    assert await auditor.replay(settings, relationship.id, fmt="text", out=out) == 0
    text = out.getvalue()
    assert "phase: concluded" in text and "v14" in text and "goals achieved" in text


async def test_replay_as_of_a_moment_and_of_unknown_relationships(
    settings: Settings, repository: RelationshipRepository
) -> None:
    relationship = walk_to("cultivation")
    await repository.save(relationship)
    before = datetime(2000, 1, 1, tzinfo=UTC)
    err = io.StringIO()
    assert await auditor.replay(settings, relationship.id, as_of=before, err=err) == 1
    assert "no relationship" in err.getvalue()
    out = io.StringIO()
    assert await auditor.replay(settings, relationship.id, as_of=datetime.now(UTC), out=out) == 0
    assert json.loads(out.getvalue())["relationship"]["phase"] == "cultivation"
    assert await auditor.replay(settings, "nope", err=io.StringIO()) == 2


async def test_rebuild_reports_progress_and_keeps_the_tables(
    settings: Settings, store: EventStore, repository: RelationshipRepository, dsn: str
) -> None:
    await save_all(repository, [walk_to("concluded"), walk_to("refinement")])
    err = io.StringIO()
    assert await auditor.rebuild(settings, err=err) == 0
    first = await dump(store)
    lines = err.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == [
        "relationship_summary",
        "timeline",
        "phase_statistics",
    ]
    assert all("100%" in line and "events/s" in line for line in lines)
    err = io.StringIO()
    assert await auditor.rebuild(settings, "timeline", err=err) == 0
    assert await dump(store) == first
    assert await auditor.rebuild(settings, "nope", err=io.StringIO()) == 2


async def test_demo_loads_relationships_across_all_phases(
    settings: Settings,
    store: EventStore,
    repository: RelationshipRepository,
    runner: ProjectionRunner,
) -> None:
    out = io.StringIO()
    now = datetime.now(UTC)
    assert await auditor.demo(settings, now=now, out=out) == 0
    assert "loaded" in out.getvalue()
    models = ReadModels(store, decoder(repository), runner, clock=lambda: now)
    page = await models.list_relationships(limit=500, min_position=await store.max_position())
    phases = {item["phase"] for item in page["items"]}
    assert phases == set(PHASES)
    reasons = {r["code"] for item in page["items"] for r in item["risk_reasons"]}
    assert {"paused_too_long", "open_high_concern", "overdue_action_items"} <= reasons
    verified = await models.verify_all()
    assert verified.valid and verified.streams_checked == len(page["items"])


async def test_verify_all_reports_the_tree_and_every_chain(
    settings: Settings, repository: RelationshipRepository
) -> None:
    """The two checks run at the same time; both are in the one answer."""
    relationships = [walk_to("cultivation"), walk_to("concluded")]
    for relationship in relationships:
        await repository.save(relationship)
    out = io.StringIO()
    assert await auditor.verify(settings, all=True, fmt="json", out=out) == 0
    report = json.loads(out.getvalue())
    assert report["valid"] is True
    assert report["streams_checked"] == 2
    assert report["events_checked"] == sum(r.version for r in relationships)
    events = report["events_checked"]
    assert report["tree"]["contiguous_events"] == events  # the tree's part, in the same answer
    assert report["tree"]["position_counter"] == events
