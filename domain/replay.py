"""Rebuilding a relationship from its history: at its latest version, a given version,
or a given moment, optionally starting from a snapshot.

Replay only applies events (never re-checks rules), so any history that was
once recorded can always be read back.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Mapper, StoredEvent

from domain.relationship import Relationship


def rebuild(
    events: Iterable[Any],
    *,
    version: int | None = None,
    as_of: datetime | None = None,
    snapshot: Snapshot | None = None,
) -> Relationship | None:
    """The relationship after applying ``events`` in order (``None`` if there are none).

    ``version`` stops after that version; ``as_of`` stops before the first
    event recorded (``timestamp``) after that moment. With a ``snapshot``,
    ``events`` may start anywhere: those the snapshot already covers are skipped.
    """
    relationship: Relationship | None = None
    if snapshot is not None and (version is None or snapshot.originator_version <= version):
        relationship = cast(Relationship, snapshot.mutate(None))
    for event in events:
        if version is not None and event.originator_version > version:
            break
        if as_of is not None and event.timestamp > as_of:
            break
        if relationship is not None and event.originator_version <= relationship.version:
            continue
        relationship = cast(Relationship | None, event.mutate(relationship))
    return relationship


def rebuild_from_stored(
    mapper: Mapper[Any],
    stored_events: Iterable[StoredEvent],
    *,
    version: int | None = None,
    as_of: datetime | None = None,
    snapshot: StoredEvent | None = None,
) -> Relationship | None:
    """Like :func:`rebuild`, decoding stored events (and a stored snapshot) with ``mapper``.

    Events are decoded lazily, so stopping at a version decodes nothing beyond it.
    """
    decoded_snapshot = (
        None if snapshot is None else cast(Snapshot, mapper.to_domain_event(snapshot))
    )
    events = (mapper.to_domain_event(stored) for stored in stored_events)
    return rebuild(events, version=version, as_of=as_of, snapshot=decoded_snapshot)


def take_snapshot(relationship: Relationship) -> Snapshot:
    """A snapshot of the relationship's state at its current version.

    Store it (``mapper.to_stored_event``) every N events; loading any version
    then costs one snapshot plus fewer than N events.
    """
    return Snapshot.take(relationship)
