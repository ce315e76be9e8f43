"""The values that go into and come out of the event store."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID, uuid4


@dataclass(frozen=True)
class NewEvent:
    """An event to append: its stream position and the mapper's output."""

    stream_id: UUID
    version: int
    topic: str
    payload: bytes
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_id: UUID = field(default_factory=uuid4)


@dataclass(frozen=True)
class Tracking:
    """A checkpoint: `name` has processed the global log up to `position`."""

    name: str
    position: int


class AppendRequest(NamedTuple):
    """One caller's atomic append: all of its events are stored, or none.

    `fingerprint` identifies what the caller meant, for idempotency; by default
    it is a hash of the events' streams, topics and payloads. Pass your own when
    payloads are not deterministic (an AES cipher uses a fresh nonce each time).

    A named tuple rather than a dataclass: one is built for every append, on
    the path that every concurrent append waits on (see group_commit).
    """

    events: Sequence[NewEvent]
    idempotency_key: str | None = None
    fingerprint: bytes | None = None
    tracking: Tracking | None = None

    def effective_fingerprint(self) -> bytes:
        if self.fingerprint is not None:
            return self.fingerprint
        digest = hashlib.sha256()
        for event in self.events:
            for part in (event.stream_id.bytes, event.topic.encode(), event.payload):
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
        return digest.digest()


@dataclass(frozen=True)
class AppendResult:
    """Where a request's events landed. `replayed` is true when the store
    returned an earlier append's result (same idempotency key or event ids)."""

    positions: tuple[int, ...]
    recorded_at: datetime
    replayed: bool = False

    @property
    def last_position(self) -> int | None:
        return self.positions[-1] if self.positions else None


@dataclass(frozen=True)
class StoredRecord:
    """An event as stored, with its place in its stream and in the global log."""

    position: int
    stream_id: UUID
    version: int
    event_id: UUID
    topic: str
    payload: bytes
    metadata: Mapping[str, Any]
    recorded_at: datetime
    chain_hash: bytes
    data_key: bytes | None = None
    """Its relationship's data key, wrapped (table data_keys), as read with the
    record; None when it has none or it was erased."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking one stream's hash chain."""

    stream_id: UUID
    valid: bool
    checked: int
    first_invalid_version: int | None = None
    reason: str | None = None
