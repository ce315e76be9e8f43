"""How events are turned into bytes for the event store, and back.

The bytes are eventsourcing's: a ``Mapper`` with a ``JSONTranscoder``
(``{"_type_": ..., "_data_": ...}`` objects for non-JSON values), optionally
zlib-compressed, then AES-GCM-encrypted. Encryption covers the whole payload,
confidential fields included.
"""

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import orjson
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Transcoding,
    UUIDAsHex,
)
from eventsourcing.utils import Environment

from domain.state import (
    AgreementVersion,
    Candidate,
    ConcernNote,
    GoalProgress,
    Meeting,
    Pause,
    ReflectionNote,
    TrackedActionItem,
)
from domain.values import (
    ActionItem,
    Actor,
    Cadence,
    Deliverable,
    Goal,
    RiskReason,
    TimeCommitment,
)


class DateAsISO(Transcoding):
    """``datetime.date`` as ``YYYY-MM-DD`` (a bare ``JSONTranscoder`` cannot encode dates)."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class DataclassAsDict(Transcoding):
    """A dataclass (value object or state record) as an object of its fields.

    Fields whose default is ``None`` are left out when ``None``: it keeps
    payloads small and the default brings them back on decode. Nested values
    (dates, other dataclasses) are transcoded by the transcoder.
    """

    def __init__(self, cls: type[Any], name: str) -> None:
        self.type = cls
        self.name = name
        fields = dataclasses.fields(cls)
        self._fields = tuple(field.name for field in fields)
        self._optional = frozenset(field.name for field in fields if field.default is None)

    def encode(self, obj: Any) -> dict[str, Any]:
        optional = self._optional
        return {
            name: value
            for name in self._fields
            if (value := getattr(obj, name)) is not None or name not in optional
        }

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


STORED_NAMES: dict[type[Any], str] = {
    Actor: "actor",
    Goal: "goal",
    Cadence: "cadence",
    ActionItem: "action_item",
    RiskReason: "risk_reason",
    TimeCommitment: "time_commitment",
    Deliverable: "deliverable",
    Candidate: "state.candidate",
    AgreementVersion: "state.agreement_version",
    GoalProgress: "state.goal_progress",
    TrackedActionItem: "state.open_action_item",
    Meeting: "state.meeting",
    ReflectionNote: "state.reflection",
    ConcernNote: "state.concern",
    Pause: "state.pause",
}
"""The name each dataclass is stored under (``_type_``): fixed here, so renaming a
class in code never makes stored payloads unreadable."""


def transcodings() -> list[Transcoding]:
    """Every transcoding the domain's events (and snapshots) need."""
    return [
        UUIDAsHex(),
        DecimalAsStr(),
        DatetimeAsISO(),
        DateAsISO(),
        *(DataclassAsDict(cls, name) for cls, name in STORED_NAMES.items()),
    ]


def make_transcoder(extra_transcodings: Sequence[Transcoding] = ()) -> JSONTranscoder:
    transcoder = JSONTranscoder()
    for transcoding in (*transcodings(), *extra_transcodings):
        transcoder.register(transcoding)
    return transcoder


def make_mapper(
    cipher_key: str | None = None,
    compress: bool = False,
    extra_transcodings: Sequence[Transcoding] = (),
) -> Mapper[Any]:
    """The mapper between domain events and stored events.

    ``cipher_key`` is a base64 AES key (16, 24 or 32 bytes, e.g. from
    ``AESCipher.create_key(32)``); with it every payload is encrypted.
    ``extra_transcodings`` lets the service add types of its own (for instance
    asyncpg's UUID class) without the domain importing them.
    """
    cipher = AESCipher(Environment(env={AESCipher.CIPHER_KEY: cipher_key})) if cipher_key else None
    return Mapper(
        transcoder=make_transcoder(extra_transcodings),
        compressor=ZlibCompressor() if compress else None,
        cipher=cipher,
    )


def create_cipher_key(num_bytes: int = 32) -> str:
    """A new random AES key, base64-encoded as :func:`make_mapper` expects."""
    return AESCipher.create_key(num_bytes)


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
"""Dates, times and dataclasses go to the transcoder's transcodings, as in
``JSONTranscoder``; everything else orjson writes itself."""
_WRITTEN_ALIKE = frozenset({str, int, bool, type(None), datetime, date})
"""Leaf types that orjson (with the options above) and ``JSONTranscoder``
write alike. Not floats (NaN: ``null`` against ``NaN``), not UUIDs (orjson
writes them as plain strings, which would decode as strings), not Any."""


class PayloadEncoder:
    """Writes an event's state exactly as its ``JSONTranscoder`` does, through
    orjson (about twice as fast) for the event classes whose declared fields
    can only hold values both write alike; the transcoder writes the others,
    and anything orjson refuses (an integer beyond 64 bits, a key that is not
    a string). Decoding is the transcoder's in every case."""

    def __init__(self, transcoder: JSONTranscoder) -> None:
        self._transcoder = transcoder
        self._plain: dict[type[Any], bool] = {}

    def encode(self, cls: type[Any], state: dict[str, Any]) -> bytes:
        plain = self._plain.get(cls)
        if plain is None:
            plain = self._plain[cls] = _fields_written_alike(cls, self._transcoder.types)
        if plain:
            try:
                return orjson.dumps(state, default=self._tagged, option=_ORJSON_OPTIONS)
            except TypeError:
                pass
        return self._transcoder.encode(state)

    def _tagged(self, value: Any) -> dict[str, Any]:
        """``JSONTranscoder``'s form of a value JSON cannot hold."""
        transcoding = self._transcoder.types.get(type(value))
        if transcoding is None:
            raise TypeError(type(value).__name__)  # orjson gives up: the transcoder decides
        return {"_type_": transcoding.name, "_data_": transcoding.encode(value)}


def _fields_written_alike(cls: type[Any], registered: Mapping[type[Any], Transcoding]) -> bool:
    """Whether every field of the event class ``cls`` (but its identity,
    which the mapper takes out) is declared with types written alike."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: no promise
        return False
    return all(
        _written_alike(hint, registered, set())
        for name, hint in hints.items()
        if name not in ("originator_id", "originator_version")
        and typing.get_origin(hint) is not typing.ClassVar
    )


def _written_alike(hint: Any, registered: Mapping[type[Any], Transcoding], seen: set[Any]) -> bool:
    if hint in _WRITTEN_ALIKE:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return all(type(arg) in (str, int, bool) for arg in args)
    if origin in (typing.Union, types.UnionType, list, tuple, Sequence):
        return all(arg is Ellipsis or _written_alike(arg, registered, seen) for arg in args)
    if origin is dict:
        return args[0] is str and _written_alike(args[1], registered, seen)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and hint in registered:
        if hint in seen:
            return True
        seen.add(hint)
        try:
            nested = typing.get_type_hints(hint)
        except Exception:
            return False
        return all(_written_alike(h, registered, seen) for h in nested.values())
    return False
