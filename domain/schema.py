"""Request validation and JSON Schema from the type annotations of a dataclass, with pydantic.

The event classes and value objects declare their fields once, with types
(``str``, ``bool``, ``int``, ``float``, ``date``, ``datetime``, ``UUID``,
``Literal``, ``list[...]``, nested dataclasses, ``X | None``) and the
constraint markers of :mod:`domain.values` in ``Annotated[...]``. This module
reads such a declaration once and generates a pydantic ``TypeAdapter`` over a
``TypedDict`` of the same fields, which both validates raw request data and
writes its JSON Schema (:meth:`ObjectValidator.json_schema`).

The rules, as the API states them:

- a field without a default is required; ``None`` counts as absent;
- unknown keys are errors (a typo must not be silently dropped from an audit
  trail), and so are fields the service assigns (``Assigned``);
- types are strict: ``"5"`` is not 5, ``true`` is not 1;
- every problem is reported at once with its path, such as
  ``data.goals[0].target_date``, in the API's words (see ``_MESSAGES``).
"""

import dataclasses
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from functools import cache
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,
    Required,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)
from uuid import UUID

from annotated_types import MaxLen, MinLen
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, ErrorDetails, PydanticCustomError, core_schema
from typing_extensions import TypedDict  # pydantic wants it on Python < 3.12

from domain.datetimes import DATE_MESSAGE, DATETIME_MESSAGE, parse_date, parse_datetime
from domain.errors import FieldError, ValidationFailed
from domain.values import Assigned, Between, MaxLength, MinItems, NonBlank

__all__ = [
    "NON_BLANK_PATTERN",
    "DeclaredField",
    "ObjectValidator",
    "dataclass_fields",
    "parse_datetime",
    "validator_for",
]

NON_BLANK_PATTERN = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""A character that is not white space in Python's sense (``str.isspace``), so
that ``NonBlank`` means ``value.strip() != ""`` in the validator (Rust regex)
and in the JSON Schema (ECMA-262) alike."""

Loc = tuple[str | None, ...]
"""A location inside an object with list indices left out (``("goals", None, "id")``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DeclaredField:
    """One member of a JSON object, as declared by a dataclass field."""

    name: str
    annotation: Any
    required: bool

    @property
    def assigned(self) -> bool:
        """Set by the service, never sent by a client."""
        return get_origin(self.annotation) is Annotated and any(
            isinstance(marker, Assigned) for marker in get_args(self.annotation)[1:]
        )


def dataclass_fields(cls: type, skip: Iterable[str] = ()) -> tuple[DeclaredField, ...]:
    """The fields of dataclass ``cls`` (declaration order), minus ``skip``."""
    hints = get_type_hints(cls, include_extras=True)
    skipped = frozenset(skip)
    return tuple(
        DeclaredField(
            name=field.name,
            annotation=hints[field.name],
            required=field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING,
        )
        for field in dataclasses.fields(cls)
        if field.name not in skipped
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Shape:
    """What an object at some location accepts: for messages about unknown keys."""

    assigned: frozenset[str]
    unknown: str
    """The message for a key that is neither a field nor assigned."""


class ObjectValidator:
    """Validates a JSON object against declared fields; writes its JSON Schema.

    Built once per declaration (see :func:`validator_for`); ``parse`` returns
    the typed values of the fields given (nested dataclasses built, absent and
    ``None`` fields left out) or raises :class:`ValidationFailed`.
    """

    def __init__(self, name: str, kind: str, fields: Sequence[DeclaredField]) -> None:
        self.kind = kind
        self.fields = tuple(field.name for field in fields if not field.assigned)
        """The keys a client may send, in declaration order."""
        self._shapes: dict[Loc, _Shape] = {}
        self._adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(
            self._object(name, kind, fields, (), build=None)
        )

    def parse(self, raw: object, path: str) -> dict[str, Any]:
        """Typed field values of ``raw``; errors have paths under ``path`` (``data``, or
        ``""`` for top-level members of a body)."""
        try:
            return self._adapter.validate_python(raw)
        except ValidationError as exc:
            details = exc.errors(include_url=False, include_input=False)
            errors = _unknown_keys_first(details, 0)
            raise ValidationFailed(self._field_error(e, path) for e in errors) from None

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the object (draft 2020-12), nested objects under ``$defs``."""
        return self._adapter.json_schema()

    # --- from annotations to pydantic types --------------------------------------------

    def _object(
        self,
        name: str,
        kind: str,
        fields: Sequence[DeclaredField],
        loc: Loc,
        build: Callable[..., Any] | None,
    ) -> Any:
        accepted = {field.name for field in fields if not field.assigned}
        expected = ", ".join(sorted(accepted)) or "no fields"
        self._shapes[loc] = _Shape(
            assigned=frozenset(field.name for field in fields if field.assigned),
            unknown=f"is not a field of {kind} (expected {expected})",
        )
        members = {
            field.name: (Required if field.required else NotRequired)[
                self._annotation(field.annotation, (*loc, field.name))
            ]
            for field in fields
            if not field.assigned
        }
        typed_dict = cast(Any, TypedDict)(name, members)
        typed_dict.__pydantic_config__ = ConfigDict(extra="forbid")
        metadata: list[Any] = [BeforeValidator(_none_as_absent(accepted))]
        if build is not None:
            metadata.append(AfterValidator(lambda values: build(**values)))
        return Annotated[typed_dict, *metadata]

    def _annotation(self, annotation: Any, loc: Loc) -> Any:
        origin = get_origin(annotation)
        if origin is Annotated:
            inner, *markers = get_args(annotation)
            constraints = [c for marker in markers for c in _constraints(marker)]
            converted = self._annotation(inner, loc)
            return Annotated[converted, *constraints] if constraints else converted
        if origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                raise TypeError(f"unsupported union {annotation!r}")
            # None is taken for absent before validation; the schema says it may be sent.
            return self._annotation(options[0], loc) | None
        if origin is Literal:
            vocabulary = ", ".join(str(option) for option in get_args(annotation))
            return Annotated[annotation, _Refusal(f"must be one of: {vocabulary}")]
        if origin is list:
            (item,) = get_args(annotation)
            return Annotated[list[self._annotation(item, (*loc, None))], Strict()]  # type: ignore[misc]
        if annotation in _SCALARS:
            return _SCALARS[annotation]
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            name = annotation.__name__
            return self._object(name, name, dataclass_fields(annotation), loc, build=annotation)
        raise TypeError(f"no JSON schema for {annotation!r}")

    # --- from pydantic's errors to the API's ------------------------------------------

    def _field_error(self, error: ErrorDetails, path: str) -> FieldError:
        loc = error["loc"]
        where = _path(path, loc)
        if error["type"] == "extra_forbidden":
            shape = self._shapes[tuple(None if isinstance(p, int) else p for p in loc[:-1])]
            if loc[-1] in shape.assigned:
                return FieldError(where, "is assigned by the service: do not send it")
            return FieldError(where, shape.unknown)
        message = _MESSAGES.get(error["type"])
        if message is None:
            return FieldError(where, error["msg"])
        return FieldError(where, message if isinstance(message, str) else message(error))


@cache
def validator_for(cls: type, skip: frozenset[str] = frozenset(), kind: str = "") -> ObjectValidator:
    """The validator of dataclass ``cls``'s fields minus ``skip`` (built once, then cached);
    ``kind`` names the object in messages (default: the class's name)."""
    return ObjectValidator(cls.__name__, kind or cls.__name__, dataclass_fields(cls, skip))


def _none_as_absent(accepted: set[str]) -> Callable[[Any], Any]:
    """``None`` for a declared field means absent (an undeclared key stays, to be refused)."""

    def drop(value: Any) -> Any:
        if isinstance(value, Mapping) and None in value.values():
            return {k: v for k, v in value.items() if v is not None or k not in accepted}
        return value

    return drop


@dataclasses.dataclass(frozen=True, slots=True)
class _Refusal:
    """Any failure of the annotated schema reads as ``message`` (for one-way failures
    such as a vocabulary's)."""

    message: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.custom_error_schema(
            handler(source), custom_error_type="refused", custom_error_message=self.message
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Range:
    """``Between`` once the type is checked: one message naming both bounds."""

    low: float
    high: float

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        low, high = self.low, self.high
        message = f"must be between {_number_text(low)} and {_number_text(high)}"

        def check(value: float) -> float:
            if low <= value <= high:
                return value
            raise PydanticCustomError("out_of_range", message)

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(minimum=self.low, maximum=self.high)
        return json_schema


def _constraints(marker: object) -> list[Any]:
    if isinstance(marker, NonBlank):
        return [StringConstraints(pattern=NON_BLANK_PATTERN)]
    if isinstance(marker, MaxLength):
        return [MaxLen(marker.limit)]
    if isinstance(marker, MinItems):
        return [MinLen(marker.count)]
    if isinstance(marker, Between):
        return [_Range(marker.low, marker.high)]
    return []


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _reading(parse: Callable[[str], Any], message: str) -> Callable[[object], Any]:
    """A plain validator from a string parser that raises ``ValueError`` with the message."""

    def validate(value: object) -> Any:
        if not isinstance(value, str):
            raise PydanticCustomError("format", message)
        try:
            return parse(value)
        except ValueError as exc:
            raise PydanticCustomError("format", str(exc)) from None

    return validate


def _uuid(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise ValueError("must be a UUID") from None


_SCALARS: dict[object, Any] = {
    str: Annotated[str, Strict()],
    bool: Annotated[bool, Strict()],
    int: Annotated[int, Strict()],
    float: Annotated[float, Strict()],  # takes 5 as 5.0, not True
    date: Annotated[
        date,
        PlainValidator(_reading(parse_date, DATE_MESSAGE)),
        WithJsonSchema({"type": "string", "format": "date"}),
    ],
    datetime: Annotated[
        datetime,
        PlainValidator(_reading(parse_datetime, DATETIME_MESSAGE)),
        WithJsonSchema({"type": "string", "format": "date-time"}),
    ],
    UUID: Annotated[
        UUID,
        PlainValidator(_reading(_uuid, "must be a UUID")),
        WithJsonSchema({"type": "string", "format": "uuid"}),
    ],
}


def _items(error: ErrorDetails) -> str:
    count = (error.get("ctx") or {}).get("min_length", 1)
    return f"must have at least {count} item{'s' if count != 1 else ''}"


def _at_most(error: ErrorDetails) -> str:
    return f"must be at most {(error.get('ctx') or {}).get('max_length')} characters"


_MESSAGES: dict[str, str | Callable[[ErrorDetails], str]] = {
    "missing": "is required",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "string_pattern_mismatch": "must not be empty",  # NON_BLANK_PATTERN is the only pattern
    "string_too_long": _at_most,
    "too_short": _items,
}
"""pydantic's error types, in the API's words; custom errors carry their own message."""


def _unknown_keys_first(errors: list[ErrorDetails], depth: int) -> list[ErrorDetails]:
    """The errors in the API's order: per object, its unknown keys (in the order
    sent), then its fields (declared order), depth first. pydantic lists each
    object's unknown keys after its fields; ``errors`` share ``loc[:depth]``."""
    unknown: list[ErrorDetails] = []
    groups: list[list[ErrorDetails]] = []
    for error in errors:
        loc = error["loc"]
        member = loc[depth : depth + 1]  # the field or index it lies under; () for the object
        if len(loc) == depth + 1 and error["type"] == "extra_forbidden":
            unknown.append(error)
        elif member and groups and groups[-1][0]["loc"][depth : depth + 1] == member:
            groups[-1].append(error)
        else:
            groups.append([error])
    ordered = unknown
    for group in groups:
        ordered.extend(group if len(group) == 1 else _unknown_keys_first(group, depth + 1))
    return ordered


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or "body"
