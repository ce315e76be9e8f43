from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.store.eventstore import EventStore
from tests.support.database import database_url_for_tests, drop_schema, new_schema_name


@pytest.fixture(scope="session")
def dsn() -> str:
    return database_url_for_tests()


@pytest.fixture
def schema() -> str:
    return new_schema_name()


@pytest.fixture
async def store(dsn: str, schema: str) -> AsyncIterator[EventStore]:
    store = await EventStore.open(dsn, schema)
    try:
        yield store
    finally:
        await store.close()
        await drop_schema(dsn, schema)
