"""Turning domain values into JSON-ready values (for API bodies and webhooks)."""

import dataclasses
from collections.abc import Mapping
from datetime import date, datetime
from functools import cache
from typing import Any
from uuid import UUID

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


def to_jsonable(value: Any) -> JSONValue:
    """Dates and date-times as ISO 8601 strings, UUIDs as strings, dataclasses as objects.

    ``None`` fields of value objects are left out, as the client would have
    left them out.
    """
    if type(value) in _AS_THEY_ARE:  # the common case, before any isinstance
        return value  # type: ignore[no-any-return]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            name: to_jsonable(item)
            for name in _field_names(type(value))
            if (item := getattr(value, name)) is not None
        }
    raise TypeError(f"cannot represent {type(value).__name__} as JSON")


_AS_THEY_ARE = frozenset({str, int, bool, float, type(None)})


@cache
def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))
