"""An event's data as JSON text, written straight from its typed values.

The same JSON as ``domain.event_data`` (dates and date-times in ISO 8601,
UUIDs as strings, value objects as objects without their None fields, sets as
lists), but produced by the C JSON encoder in one pass, without first
building the JSON-ready copy: projections store data as text for jsonb
columns, and on a rebuild this was the largest cost after decoding. A test
checks that both agree on every event type.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from uuid import UUID

from domain import REDACTED, Relationship, confidential_fields


def data_json(event: Relationship.Event, *, redact: bool) -> tuple[str, tuple[str, ...]]:
    """The event's data as JSON text, with its confidential fields replaced by
    ``"[redacted]"`` when ``redact``; and the names of those fields (sorted)."""
    fields = event.data_fields()
    hidden = confidential_fields(event.api_type) & fields.keys()
    if redact and hidden:
        fields = {key: REDACTED if key in hidden else value for key, value in fields.items()}
    return json.dumps(fields, default=_default, ensure_ascii=False), tuple(sorted(hidden))


def _default(value: Any) -> Any:
    """What the JSON encoder cannot write itself (it recurses into the result)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            name: item
            for name in _field_names(type(value))
            if (item := getattr(value, name)) is not None
        }
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    raise TypeError(f"cannot represent {type(value).__name__} as JSON")


@functools.cache
def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))
