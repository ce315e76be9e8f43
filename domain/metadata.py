"""An event's metadata: the envelope kept beside its payload in clear.

One place builds it from a domain event when the event is recorded
(:func:`event_metadata`) and one reads it back into a typed value
(:func:`read_metadata`, an :class:`EventMetadata`): the type, when it
happened, who posted it and from where, the correlation and causation ids,
and the phase change. Never a confidential field. Readers of the log
(projections, the audit trail, webhooks) see a phase change, and whether it
concludes the relationship, from this alone, without decoding the payload.

Pure, and below the aggregate: :mod:`domain.relationship` imports
:data:`ENVELOPE_FIELDS`, :func:`changes_phase` and :func:`paused_after` from here.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from domain.jsonable import JSONValue, to_jsonable
from workflows import Phase

CONCLUDED: Phase = "concluded"
PAUSED = "relationship.paused"
RESUMED = "relationship.resumed"

ENVELOPE_FIELDS = frozenset(
    {
        "originator_id",
        "originator_version",
        "originator_topic",
        "timestamp",
        "actor",
        "occurred_at",
        "source",
        "correlation_id",
        "causation_id",
        "from_phase",
        "to_phase",
    }
)
"""Fields every domain event carries besides its data (identity, envelope, phases)."""


def changes_phase(from_phase: str | None, to_phase: str | None) -> bool:
    """Whether an event moved its relationship to another phase (the one
    definition, for domain events and for metadata read back alike)."""
    return from_phase != to_phase


def paused_after(paused: bool, event_type: str, phase_changed: bool) -> bool:
    """Whether a relationship is paused after an event, given whether it was
    before: a pause starts with ``relationship.paused`` and ends with
    ``relationship.resumed`` or with any phase change (the one statement of
    that rule: the aggregate and the read models apply it)."""
    if phase_changed or event_type == RESUMED:
        return False
    return paused or event_type == PAUSED


class MetadataSource(Protocol):
    """What :func:`metadata_of` reads of a domain event (``Relationship.Event``)."""

    @property
    def api_type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def actor(self) -> Any: ...
    @property
    def source(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def causation_id(self) -> str | None: ...
    @property
    def from_phase(self) -> Phase: ...
    @property
    def to_phase(self) -> Phase: ...


class EventMetadata(NamedTuple):
    """An event's metadata as a typed value (``actor`` in its JSON form).
    A tuple: cheap to make for every event a projection reads."""

    type: str
    occurred_at: datetime | None
    actor: JSONValue
    source: str | None
    correlation_id: str | None
    causation_id: str | None
    from_phase: str | None
    to_phase: str | None

    @property
    def changes_phase(self) -> bool:
        return changes_phase(self.from_phase, self.to_phase)

    @property
    def concludes(self) -> bool:
        """Whether the event concluded the relationship (a conclusion or a
        withdrawal: the events whose ``concluded_outcome`` is set)."""
        return self.to_phase == CONCLUDED and self.changes_phase

    def paused_after(self, paused: bool) -> bool:
        """Whether the relationship is paused after this event (see :func:`paused_after`)."""
        return paused_after(paused, self.type, self.changes_phase)

    def stored(self) -> dict[str, Any]:
        """The JSON object kept beside the payload (absent values left out)."""
        metadata = {
            "type": self.type,
            "occurred_at": to_jsonable(self.occurred_at),
            "actor": self.actor,
            "source": self.source,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "from_phase": self.from_phase,
            "to_phase": self.to_phase,
        }
        return {key: value for key, value in metadata.items() if value is not None}


def metadata_of(event: MetadataSource) -> EventMetadata:
    """The metadata of a domain event, as a typed value."""
    return EventMetadata(
        type=event.api_type,
        occurred_at=event.occurred_at,
        actor=to_jsonable(event.actor),
        source=event.source,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        from_phase=event.from_phase,
        to_phase=event.to_phase,
    )


def event_metadata(event: MetadataSource) -> dict[str, Any]:
    """The metadata of a domain event as the store keeps it (JSON)."""
    return metadata_of(event).stored()


_new_metadata = tuple.__new__
"""Makes an :class:`EventMetadata` from its values in field order, without the
keyword handling of the class call (read once per event per projection)."""


def read_metadata(raw: Mapping[str, Any]) -> EventMetadata:
    """Stored metadata read back (a member missing or of the wrong kind reads as None)."""
    get = raw.get
    occurred_at, source = get("occurred_at"), get("source")
    correlation_id, causation_id = get("correlation_id"), get("causation_id")
    from_phase, to_phase = get("from_phase"), get("to_phase")
    values = (
        str(get("type", "")),
        datetime.fromisoformat(occurred_at) if isinstance(occurred_at, str) else None,
        get("actor"),
        source if isinstance(source, str) else None,
        correlation_id if isinstance(correlation_id, str) else None,
        causation_id if isinstance(causation_id, str) else None,
        from_phase if isinstance(from_phase, str) else None,
        to_phase if isinstance(to_phase, str) else None,
    )
    return _new_metadata(EventMetadata, values)
