"""Erasable fields: free text that may describe a person, and what erasing them means.

A field is erasable when its declaration carries the :class:`domain.values.Erasable`
marker (``PersonalText``, ``RequiredPersonalText``, ``PersonalLabel``), at the
top of an event's data or inside its value objects (a goal's ``statement``, an
action item's ``description``, ...). That declaration is the only list: the
codec encrypts exactly these values under the relationship's data key, the
aggregate stores ``"[erased]"`` in them once the relationship is erased, and
docs/events.md (generated) names them.

Ids, vocabulary codes, dates, numbers and booleans are never erasable, so the
lifecycle, the read models and the statistics work the same after an erasure.
An empty string is left as it is everywhere (it says nothing about anyone, and
guards that ask whether a text is present must answer the same after erasure).
"""

import dataclasses
import types
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from domain.metadata import ENVELOPE_FIELDS
from domain.values import Erasable

ERASED = "[erased]"
"""What every erasable field reads once the relationship's personal data is erased."""

Shape = tuple[Any, ...]
"""Where the erasable strings of a value are: ``("text",)`` the value itself;
``("list", shape)`` in each item; ``("object", cls, ((name, shape), ...))`` in
those fields of a dataclass value."""

_TEXT: Shape = ("text",)


def _shape(annotation: Any) -> Shape | None:
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *markers = get_args(annotation)
        if any(isinstance(marker, Erasable) for marker in markers):
            return _TEXT
        return _shape(inner)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _shape(options[0]) if len(options) == 1 else None
    if origin is list:
        item = _shape(get_args(annotation)[0])
        return None if item is None else ("list", item)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        fields = erasable_shape(annotation)
        return ("object", annotation, fields) if fields else None
    return None


@cache
def erasable_shape(cls: type) -> tuple[tuple[str, Shape], ...]:
    """The erasable fields of an event class or value object, with where their
    strings are (see :data:`Shape`); the envelope is never erasable."""
    hints = get_type_hints(cls, include_extras=True)
    found = []
    for field in dataclasses.fields(cls):
        if field.name in ENVELOPE_FIELDS:
            continue
        shape = _shape(hints[field.name])
        if shape is not None:
            found.append((field.name, shape))
    return tuple(found)


def erasable_paths(cls: type) -> list[str]:
    """The erasable fields of ``cls`` as paths: ``notes``, ``objectives[]``,
    ``goals[].statement``, ``cadence.location``."""
    return [path for name, shape in erasable_shape(cls) for path in _paths(name, shape)]


def _paths(prefix: str, shape: Shape) -> Iterator[str]:
    kind = shape[0]
    if kind == "text":
        yield prefix
    elif kind == "list":
        yield from _paths(prefix + "[]", shape[1])
    else:
        for name, inner in shape[2]:
            yield from _paths(f"{prefix}.{name}", inner)


def transform(shape: Shape, value: Any, change: Callable[[Any], Any]) -> Any:
    """``value`` with ``change`` applied to each of its erasable leaves (never
    to ``None``); lists and dataclass values are copied, never mutated."""
    if value is None:
        return None
    kind = shape[0]
    if kind == "text":
        return change(value)
    if kind == "list":
        return [transform(shape[1], item, change) for item in value]
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    return dataclasses.replace(
        value, **{name: transform(inner, getattr(value, name), change) for name, inner in shape[2]}
    )


def transform_fields(
    cls: type, fields: Mapping[str, Any], change: Callable[[Any], Any]
) -> dict[str, Any]:
    """A copy of an event's field values (by name) with ``change`` applied to
    every erasable leaf."""
    changed = dict(fields)
    for name, shape in erasable_shape(cls):
        if name in changed:
            changed[name] = transform(shape, changed[name], change)
    return changed


def erase_text(value: Any) -> Any:
    """``"[erased]"`` for a non-empty string; anything else unchanged."""
    return ERASED if isinstance(value, str) and value else value
