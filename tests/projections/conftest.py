from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from domain import make_mapper
from service.projection_runner import ProjectionRunner
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.projections.support import runner_for


@pytest.fixture
def repository(store: EventStore) -> RelationshipRepository:
    return RelationshipRepository(store, make_mapper())


@pytest.fixture
async def runner(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> AsyncIterator[ProjectionRunner]:
    """The service's projections, started; stopped after the test."""
    runner = runner_for(store, dsn, repository)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()
