"""Event types: API type <-> class, confidential fields, JSON Schemas, and an event as the API
shows it.

Confidential fields are marked here and nowhere else. The service encrypts
whole payloads at rest when a cipher key is configured (see
:mod:`domain.serialization`) and uses :func:`redact` to hide these fields from
the ``auditor`` role; the relationship's state never holds them.
"""

from collections.abc import Mapping
from typing import Any

from domain.envelope import EnvelopeFields
from domain.erasure import ERASED, erasable_paths
from domain.jsonable import JSONValue, to_jsonable
from domain.metadata import ENVELOPE_FIELDS
from domain.relationship import EVENT_CLASSES, RECORDABLE_TYPES, Relationship
from domain.schema import ObjectValidator, dataclass_fields, validator_for

CONFIDENTIAL_FIELDS: Mapping[str, frozenset[str]] = {
    "reflection.recorded": frozenset({"values", "work_style", "notes"}),
    "candidate.met": frozenset({"notes"}),
    "meeting.held": frozenset({"notes"}),
    "feedback.given": frozenset({"comment"}),
    "concern.raised": frozenset({"detail"}),
    "concern.resolved": frozenset({"note"}),
    "advocacy.recorded": frozenset({"description"}),
}
"""Per event type, the data fields marked ``(c)`` in docs/api.md."""

REDACTED = "[redacted]"

ERASABLE_FIELDS: Mapping[str, tuple[str, ...]] = {
    api_type: tuple(erasable_paths(cls)) for api_type, cls in EVENT_CLASSES.items()
}
"""Per event type, its erasable fields as paths (``goals[].statement``): read
from the ``Erasable`` marker of each field's declaration (domain.erasure)."""

EVENT_TYPES_BY_CLASS: Mapping[type[Relationship.Event], str] = {
    cls: api_type for api_type, cls in EVENT_CLASSES.items()
}

__all__ = [
    "CONFIDENTIAL_FIELDS",
    "ERASABLE_FIELDS",
    "EVENT_CLASSES",
    "EVENT_TYPES_BY_CLASS",
    "RECORDABLE_TYPES",
    "REDACTED",
    "api_type_of",
    "confidential_fields",
    "data_schema",
    "envelope_schema",
    "event_class",
    "event_data",
    "opening_schema",
    "redact",
]


def event_class(api_type: str) -> type[Relationship.Event]:
    """The event class of an API type (``KeyError`` if unknown)."""
    return EVENT_CLASSES[api_type]


def api_type_of(event: Relationship.Event | type[Relationship.Event]) -> str:
    """The API type (``meeting.held``) of an event or event class."""
    cls = event if isinstance(event, type) else type(event)
    return EVENT_TYPES_BY_CLASS[cls]


def confidential_fields(api_type: str) -> frozenset[str]:
    return CONFIDENTIAL_FIELDS.get(api_type, frozenset())


def redact(api_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with its confidential fields replaced by ``"[redacted]"``.

    Fields that were not given stay absent, so a reader can tell "no notes" from
    "notes you may not read"; an erased one reads ``"[erased]"`` for every role.
    """
    hidden = confidential_fields(api_type)
    return {
        key: REDACTED if key in hidden and value is not None and value != ERASED else value
        for key, value in data.items()
    }


def event_data(event: Relationship.Event, *, redacted: bool = False) -> dict[str, JSONValue]:
    """The event's ``data`` as the API shows it: JSON-ready, absent fields left out."""
    data = {key: to_jsonable(value) for key, value in event.data_fields().items()}
    return redact(event.api_type, data) if redacted else data


# --- JSON Schemas, generated from the same declarations that validate requests ---------


def data_schema(api_type: str) -> dict[str, Any]:
    """The JSON Schema of an event type's ``data`` (``KeyError`` if the type is unknown).

    Written by pydantic from the event class's annotations, the very declaration
    that :meth:`Relationship.Event.parse` validates requests against: types,
    vocabularies (``enum``), ``maxLength``, ``minItems``, ``minimum``/``maximum``,
    ``format`` (``date``, ``date-time``, ``uuid``), required fields and
    ``additionalProperties: false``. Nested objects are under ``$defs``.
    """
    cls = EVENT_CLASSES[api_type]
    return validator_for(cls, ENVELOPE_FIELDS, cls.api_type).json_schema()


def envelope_schema() -> dict[str, Any]:
    """The JSON Schema of the envelope members of a request body (``occurred_at``,
    ``actor``, ``correlation_id``, ``causation_id``)."""
    return validator_for(EnvelopeFields, kind="envelope").json_schema()


def opening_schema() -> dict[str, Any]:
    """The JSON Schema of the body of ``POST /v1/relationships``: the opening
    event's data and the envelope, side by side."""
    fields = (
        *dataclass_fields(Relationship.Opened, ENVELOPE_FIELDS),
        *dataclass_fields(EnvelopeFields),
    )
    return ObjectValidator("RelationshipOpening", "relationship.opened", fields).json_schema()
