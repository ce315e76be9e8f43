"""The mentoring relationship: its aggregate, events, validation and serialisation.

Pure (no I/O). The service opens and records through :class:`Relationship`,
stores events with :func:`make_mapper`, and reads them back with
:func:`rebuild` / :func:`rebuild_from_stored`.
"""

from domain.catalog import (
    CONFIDENTIAL_FIELDS,
    ERASABLE_FIELDS,
    EVENT_CLASSES,
    EVENT_TYPES_BY_CLASS,
    RECORDABLE_TYPES,
    REDACTED,
    api_type_of,
    confidential_fields,
    data_schema,
    envelope_schema,
    event_class,
    event_data,
    opening_schema,
    redact,
)
from domain.envelope import ENVELOPE_KEYS, EVENT_BODY_KEYS, parse_envelope
from domain.erasure import ERASED, erase_text
from domain.errors import (
    DomainError,
    FieldError,
    GuardFailed,
    InvalidTransition,
    UnmetRule,
    ValidationFailed,
)
from domain.event_view import event_view
from domain.jsonable import to_jsonable
from domain.metadata import EventMetadata, event_metadata, metadata_of, read_metadata
from domain.relationship import Relationship
from domain.replay import rebuild, rebuild_from_stored, take_snapshot
from domain.serialization import create_cipher_key, make_mapper, transcodings
from domain.values import ActionItem, Actor, Cadence, Envelope, Goal
from domain.view import relationship_view

__all__ = [
    "CONFIDENTIAL_FIELDS",
    "ENVELOPE_KEYS",
    "ERASABLE_FIELDS",
    "ERASED",
    "EVENT_BODY_KEYS",
    "EVENT_CLASSES",
    "EVENT_TYPES_BY_CLASS",
    "RECORDABLE_TYPES",
    "REDACTED",
    "ActionItem",
    "Actor",
    "Cadence",
    "DomainError",
    "Envelope",
    "EventMetadata",
    "FieldError",
    "Goal",
    "GuardFailed",
    "InvalidTransition",
    "Relationship",
    "UnmetRule",
    "ValidationFailed",
    "api_type_of",
    "confidential_fields",
    "create_cipher_key",
    "data_schema",
    "envelope_schema",
    "erase_text",
    "event_class",
    "event_data",
    "event_metadata",
    "event_view",
    "make_mapper",
    "metadata_of",
    "opening_schema",
    "parse_envelope",
    "read_metadata",
    "rebuild",
    "rebuild_from_stored",
    "redact",
    "relationship_view",
    "take_snapshot",
    "to_jsonable",
    "transcodings",
]
