"""Typed errors of the event store: callers decide on the type, never on a message."""

from __future__ import annotations

from uuid import UUID


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now; the same call may succeed later."""


class VersionConflict(StoreError):
    """The stream has moved on since the caller read it (optimistic concurrency)."""

    def __init__(self, stream_id: UUID, attempted_version: int, current_version: int | None):
        self.stream_id = stream_id
        self.attempted_version = attempted_version
        self.current_version = current_version
        super().__init__(
            f"stream {stream_id} is at version {current_version}, "
            f"cannot append version {attempted_version}"
        )


class IdempotencyConflict(StoreError):
    """An idempotency key was reused for a different append."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"idempotency key {key!r} was already used for a different append")


class TrackingConflict(StoreError):
    """A checkpoint would not move forward (the position was already processed)."""

    def __init__(self, name: str, position: int):
        self.name = name
        self.position = position
        super().__init__(f"tracking {name!r} is already at or past position {position}")


class DuplicateEvent(StoreError):
    """An event id was already stored by another append."""
