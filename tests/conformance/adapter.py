"""A synchronous face on the asyncpg event store, so that `eventsourcing`'s own
recorder test suites (written for its synchronous recorders) can run against it.

Each recorder owns an event loop in a thread and a store in a fresh schema; the
sync methods hand coroutines to that loop and wait for their results. Store
errors are translated into the exceptions the suites expect.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
)

from service.store import errors
from service.store.eventstore import EventStore
from service.store.records import NewEvent, StoredRecord
from service.store.records import Tracking as StoreTracking
from service.store.subscriptions import Subscription as StoreSubscription
from tests.support.database import drop_schema, new_schema_name

T = TypeVar("T")

_CONFLICTS = (
    errors.VersionConflict,
    errors.TrackingConflict,
    errors.IdempotencyConflict,
    errors.DuplicateEvent,
)


class SyncStoreRecorder(ProcessRecorder):
    """Aggregate, application, tracking and process recorder in one."""

    def __init__(self, dsn: str, *, aggregate_only: bool = False):
        self._dsn = dsn
        self._aggregate_only = aggregate_only  # aggregate recorders return no ids
        self._schema = new_schema_name("conf")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.store: EventStore = self.run(EventStore.open(dsn, self._schema, pool_size=12))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 120) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def close(self) -> None:
        self.run(self.store.close())
        self.run(drop_schema(self._dsn, self._schema))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    # --- AggregateRecorder / ApplicationRecorder / ProcessRecorder ------------

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        events = [
            NewEvent(_uuid(e.originator_id), e.originator_version, e.topic, e.state, {}, uuid4())
            for e in stored_events
        ]
        store_tracking = (
            StoreTracking(tracking.application_name, tracking.notification_id) if tracking else None
        )
        try:
            result = self.run(self.store.append(events, tracking=store_tracking))
        except _CONFLICTS as exc:
            raise IntegrityError(str(exc)) from exc
        return None if self._aggregate_only else list(result.positions)

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        records = self.run(
            self.store.read_stream(
                _uuid(originator_id),
                from_version=None if gt is None else gt + 1,
                to_version=lte,
            )
        )
        if desc:
            records.reverse()
        if limit is not None:
            records = records[:limit]
        return [_stored_event(r) for r in records]

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        after = 0 if start is None else (start - 1 if inclusive_of_start else start)
        records = self.run(self.store.read_log(max(after, 0), limit, topics, until=stop))
        return [_notification(r) for r in records]

    def max_notification_id(self) -> int | None:
        return self.run(self.store.max_position()) or None

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[SyncStoreRecorder]:
        return _SyncSubscription(self, gt, topics)

    # --- TrackingRecorder --------------------------------------------------------

    def insert_tracking(self, tracking: Tracking) -> None:
        try:
            self.run(
                self.store.insert_tracking(
                    StoreTracking(tracking.application_name, tracking.notification_id)
                )
            )
        except errors.TrackingConflict as exc:
            raise IntegrityError(str(exc)) from exc

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.run(self.store.tracking_position(application_name))


class _SyncSubscription(Subscription[SyncStoreRecorder]):
    """Blocks in `__next__` until the store's async subscription yields."""

    def __init__(self, recorder: SyncStoreRecorder, gt: int | None, topics: Sequence[str]):
        super().__init__(recorder, gt, topics)
        self._async: StoreSubscription = recorder.run(_open(recorder.store, gt or 0, topics))

    def stop(self) -> None:
        super().stop()
        self._recorder._loop.call_soon_threadsafe(self._async.stop)

    def __next__(self) -> Notification:
        if self._has_been_stopped:
            raise StopIteration
        future = asyncio.run_coroutine_threadsafe(self._async.__anext__(), self._recorder._loop)
        while True:
            try:
                record = future.result(timeout=0.05)
                break
            except TimeoutError:
                if self._has_been_stopped:
                    future.cancel()
                    raise StopIteration from None
            except StopAsyncIteration:
                raise StopIteration from None
        if self._has_been_stopped:
            raise StopIteration
        return _notification(record)


async def _open(store: EventStore, after: int, topics: Sequence[str]) -> StoreSubscription:
    return store.subscribe(after, topics, poll_interval=0.2)


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _stored_event(record: StoredRecord) -> StoredEvent:
    return StoredEvent(record.stream_id, record.version, record.topic, record.payload)


def _notification(record: StoredRecord) -> Notification:
    return Notification(
        originator_id=record.stream_id,
        originator_version=record.version,
        topic=record.topic,
        state=record.payload,
        id=record.position,
    )
