"""`eventsourcing`'s own recorder conformance suites, run against the asyncpg store.

These suites were written by the library's authors for its recorders; passing
them fixes our contract: conflicts raise, inserts are atomic, notification ids
are contiguous and in commit order, and checkpoints only move forward.
"""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.tests.persistence import (
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)

from tests.conformance.adapter import SyncStoreRecorder
from tests.support.database import database_url_for_tests

pytestmark = [pytest.mark.conformance, pytest.mark.db]


class _UsesStore:
    """Gives each test fresh recorders (a schema each) and closes them after."""

    _recorders: list[SyncStoreRecorder]
    aggregate_only = False

    def setUp(self) -> None:
        self._recorders = []
        super().setUp()  # type: ignore[misc]  # a mixin: the TestCase comes after it

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]  # a mixin: the TestCase comes after it
        for recorder in self._recorders:
            recorder.close()

    def create_recorder(self) -> Any:
        recorder = SyncStoreRecorder(database_url_for_tests(), aggregate_only=self.aggregate_only)
        self._recorders.append(recorder)
        return recorder


class TestAggregateRecorder(_UsesStore, AggregateRecorderTestCase):
    aggregate_only = True


class TestApplicationRecorder(_UsesStore, ApplicationRecorderTestCase):
    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestTrackingRecorder(_UsesStore, TrackingRecorderTestCase):
    pass


class TestProcessRecorder(_UsesStore, ProcessRecorderTestCase):
    pass


class TestNonInterleavingNotificationIDs(_UsesStore, NonInterleavingNotificationIDsBaseCase):
    pass
