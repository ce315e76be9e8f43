"""How events are turned into bytes for the event store, and back.

The bytes are eventsourcing's: a ``Mapper`` with a ``JSONTranscoder``
(``{"_type_": ..., "_data_": ...}`` objects for non-JSON values), optionally
zlib-compressed, then AES-GCM-encrypted. Encryption covers the whole payload,
confidential fields included.
"""

import dataclasses
from collections.abc import Sequence
from datetime import date
from typing import Any

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
