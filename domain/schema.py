"""Validating raw JSON data against the type annotations of a dataclass.

The event classes and value objects declare their fields once, with types
(``str``, ``bool``, ``int``, ``float``, ``date``, ``datetime``, ``UUID``,
``Literal``, ``list[...]``, nested dataclasses, ``X | None``) and constraint
markers in ``Annotated[...]``. This module turns those declarations into
converters, once per class, and runs them over request data: it returns typed
values or collects every problem with a precise path such as
``data.goals[0].target_date``.

A field without a default is required; ``None`` counts as absent; unknown
keys are errors (a typo must not be silently dropped from an audit trail).
"""

import dataclasses
import types
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints
from uuid import UUID

from domain.errors import FieldError
from domain.values import Assigned, Between, MaxLength, MinItems, NonBlank


class _Invalid:
    """Marker returned by a converter that has recorded an error."""


INVALID: Any = _Invalid()

Errors = list[FieldError]
DATETIME_EXAMPLE = "2025-01-31T09:30:00Z"
Converter = Callable[[object, str, Errors], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one field of a dataclass is read from JSON."""

    name: str
    convert: Converter
    required: bool
    assigned: bool


def _fail(errors: Errors, path: str, message: str) -> Any:
    errors.append(FieldError(path, message))
    return INVALID


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _string(value: object, path: str, errors: Errors) -> Any:
    return value if isinstance(value, str) else _fail(errors, path, "must be a string")


def _boolean(value: object, path: str, errors: Errors) -> Any:
    return value if _is_bool(value) else _fail(errors, path, "must be true or false")


def _integer(value: object, path: str, errors: Errors) -> Any:
    if isinstance(value, int) and not _is_bool(value):
        return value
    return _fail(errors, path, "must be an integer")


def _number(value: object, path: str, errors: Errors) -> Any:
    if isinstance(value, int | float) and not _is_bool(value):
        return float(value)
    return _fail(errors, path, "must be a number")


def _date(value: object, path: str, errors: Errors) -> Any:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    return _fail(errors, path, "must be an ISO 8601 date (YYYY-MM-DD)")


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date-time with a time zone, whose UTC value lies in years
    1-9999. Raises ``ValueError`` with the message a client should read.

    The UTC check matters because every store and read model keeps UTC: a
    value such as ``0001-01-01T00:00:00+01:00`` parses, but converting it
    leaves what Python and PostgreSQL can hold, and once stored it would stop
    every projection that touches it.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"must be an ISO 8601 date-time, e.g. {DATETIME_EXAMPLE}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"must include a timezone offset, e.g. {DATETIME_EXAMPLE}")
    try:
        utc = parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        utc = datetime.min
    if utc in (datetime.min, datetime.max):  # PostgreSQL drivers store these as -infinity/infinity
        raise ValueError("must lie between years 1 and 9999 once converted to UTC")
    return parsed


def _datetime(value: object, path: str, errors: Errors) -> Any:
    if not isinstance(value, str):
        return _fail(errors, path, f"must be an ISO 8601 date-time, e.g. {DATETIME_EXAMPLE}")
    try:
        return parse_datetime(value)
    except ValueError as exc:
        return _fail(errors, path, str(exc))


def _uuid(value: object, path: str, errors: Errors) -> Any:
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    return _fail(errors, path, "must be a UUID")


_SCALARS: dict[object, Converter] = {
    str: _string,
    bool: _boolean,
    int: _integer,
    float: _number,
    date: _date,
    datetime: _datetime,
    UUID: _uuid,
}


def _literal(options: tuple[object, ...]) -> Converter:
    allowed = frozenset(options)
    message = "must be one of: " + ", ".join(str(option) for option in options)

    def convert(value: object, path: str, errors: Errors) -> Any:
        if isinstance(value, str) and value in allowed:
            return value
        return _fail(errors, path, message)

    return convert


def _list_of(item: Converter) -> Converter:
    def convert(value: object, path: str, errors: Errors) -> Any:
        if not isinstance(value, list):
            return _fail(errors, path, "must be a list")
        before = len(errors)
        items = [item(element, f"{path}[{index}]", errors) for index, element in enumerate(value)]
        return items if len(errors) == before else INVALID

    return convert


def _constrained(inner: Converter, markers: Sequence[object]) -> Converter:
    checks = [check for check in map(_check_for, markers) if check is not None]

    def convert(value: object, path: str, errors: Errors) -> Any:
        converted = inner(value, path, errors)
        if converted is INVALID:
            return INVALID
        for check in checks:
            message = check(converted)
            if message:
                return _fail(errors, path, message)
        return converted

    return convert


def _check_for(marker: object) -> Callable[[Any], str | None] | None:
    if isinstance(marker, NonBlank):
        return lambda value: None if value.strip() else "must not be empty"
    if isinstance(marker, MaxLength):
        limit = marker.limit
        return lambda value: None if len(value) <= limit else f"must be at most {limit} characters"
    if isinstance(marker, Between):
        low, high = marker.low, marker.high
        text = f"must be between {_number_text(low)} and {_number_text(high)}"
        return lambda value: None if low <= value <= high else text
    if isinstance(marker, MinItems):
        count = marker.count
        text = f"must have at least {count} item{'s' if count != 1 else ''}"
        return lambda value: None if len(value) >= count else text
    return None


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def converter_for(annotation: object) -> Converter:
    """The converter for a type annotation (built once per annotation)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *markers = get_args(annotation)
        return _constrained(converter_for(inner), markers)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(options) != 1:
            raise TypeError(f"unsupported union {annotation!r}")
        return converter_for(options[0])
    if origin is Literal:
        return _literal(get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        return _list_of(converter_for(item))
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _object_of(annotation)
    raise TypeError(f"no JSON converter for {annotation!r}")


def _is_assigned(annotation: object) -> bool:
    return get_origin(annotation) is Annotated and any(
        isinstance(marker, Assigned) for marker in get_args(annotation)[1:]
    )


@cache
def field_specs(cls: type, skip: frozenset[str] = frozenset()) -> tuple[FieldSpec, ...]:
    """The specs of ``cls``'s dataclass fields, minus ``skip`` (e.g. envelope fields)."""
    hints = get_type_hints(cls, include_extras=True)
    specs = []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        annotation = hints[field.name]
        has_default = (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        )
        specs.append(
            FieldSpec(
                name=field.name,
                convert=converter_for(annotation),
                required=not has_default,
                assigned=_is_assigned(annotation),
            )
        )
    return tuple(specs)


def parse_object(
    specs: Sequence[FieldSpec], raw: object, path: str, errors: Errors, kind: str
) -> dict[str, Any] | None:
    """Read an object's fields from ``raw``; ``None`` (with ``errors`` filled) if invalid."""
    if not isinstance(raw, Mapping):
        _fail(errors, path or "body", "must be an object")
        return None
    before = len(errors)
    known = {spec.name for spec in specs if not spec.assigned}
    assigned = {spec.name for spec in specs if spec.assigned}
    for key in raw:
        if key in assigned:
            _fail(errors, _join(path, str(key)), "is assigned by the service: do not send it")
        elif key not in known:
            expected = ", ".join(sorted(known)) or "no fields"
            _fail(errors, _join(path, str(key)), f"is not a field of {kind} (expected {expected})")
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.assigned:
            continue
        value = raw.get(spec.name)
        field_path = _join(path, spec.name)
        if value is None:
            if spec.required:
                _fail(errors, field_path, "is required")
            continue
        values[spec.name] = spec.convert(value, field_path, errors)
    return values if len(errors) == before else None


def _object_of(cls: type) -> Converter:
    def convert(value: object, path: str, errors: Errors) -> Any:
        fields = parse_object(field_specs(cls), value, path, errors, cls.__name__)
        return INVALID if fields is None else cls(**fields)

    return convert


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
