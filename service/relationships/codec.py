"""How the service turns events into stored payloads and back (docs/erasure.md).

Without ``MENTORFLOW_CIPHER_KEY`` a payload is eventsourcing's JSON (zlib'd
when ``MENTORFLOW_COMPRESS`` is on), as before this release.

With a cipher key, each relationship has its own data key (AES-256-GCM),
kept in table ``data_keys`` wrapped (AES-GCM) by the cipher key. The payload
is the same JSON, but every erasable field (``domain.erasure``) holds
``{"_type_": "sealed", "_data_": base64(nonce || ciphertext || tag)}``,
encrypted under the relationship's data key with its id as associated data;
ids, codes, dates and numbers stay readable. Destroying the data key (an
erasure) leaves the stored bytes as they are, and each such field then reads
``"[erased]"``.

Events stored by earlier releases with a cipher key have the whole payload
AES-GCM-encrypted by the cipher key (eventsourcing's ``AESCipher``): they are
still read (``legacy``), but their fields cannot be erased. Snapshots keep
that whole-payload encryption; an erasure deletes them.
"""

from __future__ import annotations

import base64
import os
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any, cast
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoding,
    find_id_convertor,
)
from eventsourcing.utils import get_topic, resolve_topic

from domain import Relationship, make_mapper
from domain.erasure import ERASED, erasable_shape, transform
from domain.serialization import PayloadEncoder, make_transcoder
from service.platform.settings import Settings

NONCE_BYTES = 12
DATA_KEY_BYTES = 32
CACHED_KEYS = 10_000
_WRAP_CONTEXT = b"mentorflow data key\x00"


class Sealed:
    """An erasable value as stored: nonce || AES-GCM ciphertext and tag."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob


class SealedAsBase64(Transcoding):
    type = Sealed
    name = "sealed"

    def encode(self, obj: Sealed) -> str:
        return base64.b64encode(obj.blob).decode("ascii")

    def decode(self, data: str) -> Sealed:
        return Sealed(base64.b64decode(data))


class UnreadablePayload(MapperDeserialisationError):
    """A stored payload that does not decode (altered in the database, or a key is wrong)."""


class EventCodec:
    """Encodes events for the store and decodes them back, sealing erasable
    fields under per-relationship data keys when a cipher key is configured."""

    def __init__(
        self,
        cipher_key: str | None,
        *,
        compress: bool = False,
        extra_transcodings: Sequence[Transcoding] = (),
    ) -> None:
        self.legacy: Mapper[Any] = make_mapper(
            cipher_key=cipher_key, compress=compress, extra_transcodings=extra_transcodings
        )
        """Reads payloads stored whole-encrypted by earlier releases; writes snapshots."""
        self.transcoder = make_transcoder([*extra_transcodings, SealedAsBase64()])
        self.payloads = PayloadEncoder(self.transcoder)
        self.compressor = ZlibCompressor() if compress else None
        self._master = AESGCM(base64.b64decode(cipher_key)) if cipher_key else None
        self._keys: OrderedDict[tuple[UUID, bytes], AESGCM] = OrderedDict()

    @property
    def seals(self) -> bool:
        """Whether erasable fields are sealed (a cipher key is configured): the
        condition for erasure to be possible."""
        return self._master is not None

    @property
    def snapshot_mapper(self) -> Mapper[Any]:
        return self.legacy

    # --- data keys -------------------------------------------------------------

    def new_data_key(self, stream_id: UUID) -> bytes:
        """A fresh data key for the relationship, wrapped by the cipher key."""
        master = self._require_master()
        nonce = os.urandom(NONCE_BYTES)
        key = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
        return nonce + master.encrypt(nonce, key, _WRAP_CONTEXT + stream_id.bytes)

    def data_key(self, stream_id: UUID, wrapped: bytes) -> AESGCM:
        """The relationship's data key from its wrapped form (cached by the
        wrapped bytes, which are read with every record: a destroyed key is
        never read again, so never used again)."""
        cached = self._keys.get((stream_id, wrapped))
        if cached is not None:
            return cached
        master = self._require_master()
        try:
            key = master.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _WRAP_CONTEXT + stream_id.bytes
            )
        except InvalidTag:
            raise UnreadablePayload(
                f"the data key of {stream_id} does not open with MENTORFLOW_CIPHER_KEY"
            ) from None
        aead = AESGCM(key)
        self._keys[(stream_id, wrapped)] = aead
        while len(self._keys) > CACHED_KEYS:
            self._keys.popitem(last=False)
        return aead

    def _require_master(self) -> AESGCM:
        if self._master is None:
            raise UnreadablePayload("this payload needs MENTORFLOW_CIPHER_KEY")
        return self._master

    # --- events ------------------------------------------------------------------

    def encode(self, event: Relationship.Event, data_key: AESGCM | None) -> StoredEvent:
        """The stored form of ``event``. With a cipher key, its erasable fields
        are sealed under ``data_key``; None (the key was destroyed) stores them
        as ``"[erased]"``."""
        state = dict(vars(event))  # as eventsourcing's Mapper.to_stored_event
        originator_id = cast(UUID, state.pop("originator_id"))
        originator_version = state.pop("originator_version")
        class_version = getattr(type(event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        if self._master is not None:
            self._seal_fields(type(event), state, originator_id, data_key)
        payload = self.payloads.encode(type(event), state)
        if self.compressor is not None:
            payload = self.compressor.compress(payload)
        return StoredEvent(originator_id, originator_version, get_topic(type(event)), payload)

    @staticmethod
    def _seal_fields(
        cls: type, state: dict[str, Any], stream_id: UUID, data_key: AESGCM | None
    ) -> None:
        aad = stream_id.bytes

        def seal(value: Any) -> Any:
            if not isinstance(value, str) or not value or value == ERASED:
                return value
            if data_key is None:
                return ERASED
            nonce = os.urandom(NONCE_BYTES)
            return Sealed(nonce + data_key.encrypt(nonce, value.encode("utf-8"), aad))

        for name, shape in erasable_shape(cls):
            if name in state:
                state[name] = transform(shape, state[name], seal)

    def decode(self, stored: StoredEvent, wrapped_key: bytes | None) -> Relationship.Event:
        """The domain event; each sealed field opened with the relationship's
        data key, or ``"[erased]"`` when it has none any more."""
        state = self._field_sealed_state(stored)
        if state is None:
            return cast(Relationship.Event, self.legacy.to_domain_event(stored))
        cls = resolve_topic(stored.topic)
        stream_id = cast(UUID, stored.originator_id)
        convert = find_id_convertor(cls, cast(Hashable, type(stream_id)))
        state["originator_id"] = convert(stream_id)
        state["originator_version"] = stored.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        shapes = erasable_shape(cls)
        if shapes and (self.compressor is not None or b'"sealed"' in stored.state):
            self._open_fields(cls, state, stream_id, wrapped_key)
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return cast(Relationship.Event, event)

    def _field_sealed_state(self, stored: StoredEvent) -> dict[str, Any] | None:
        """The transcoded state of a payload in this release's format (JSON,
        maybe zlib'd); None for one that is whole-payload encrypted."""
        payload = stored.state
        plausible = payload[:1] == b"{" or (self.compressor is not None and payload[:1] == b"x")
        if self._master is not None and not plausible:
            return None
        try:
            if self.compressor is not None and payload[:1] != b"{":
                payload = self.compressor.decompress(payload)
            state: dict[str, Any] = self.transcoder.decode(payload)
        except Exception as exc:
            if self._master is not None:
                return None  # a whole-payload ciphertext that happened to look like JSON
            raise UnreadablePayload(
                f"event {stored.originator_id} v{stored.originator_version} does not decode: {exc}"
            ) from exc
        return state

    def _open_fields(
        self, cls: type, state: dict[str, Any], stream_id: UUID, wrapped_key: bytes | None
    ) -> None:
        aead: AESGCM | None = None
        if wrapped_key is not None:
            aead = self.data_key(stream_id, wrapped_key)
        aad = stream_id.bytes

        def open_(value: Any) -> Any:
            if not isinstance(value, Sealed):
                return value
            if aead is None:
                return ERASED
            blob = value.blob
            try:
                return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad).decode("utf-8")
            except InvalidTag:
                raise UnreadablePayload(
                    f"a sealed field of {stream_id} does not open with its data key"
                ) from None

        for name, shape in erasable_shape(cls):
            if name in state:
                state[name] = transform(shape, state[name], open_)


class MapperCodec:
    """A bare eventsourcing ``Mapper`` with the codec's interface: no data
    keys, nothing sealed (tests and tools that pass a mapper)."""

    seals = False

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.snapshot_mapper = mapper

    def new_data_key(self, stream_id: UUID) -> bytes:  # pragma: no cover - never sealed
        raise UnreadablePayload("no data keys without a cipher key")

    def data_key(self, stream_id: UUID, wrapped: bytes) -> AESGCM:  # pragma: no cover
        raise UnreadablePayload("no data keys without a cipher key")

    def encode(self, event: Relationship.Event, data_key: AESGCM | None) -> StoredEvent:
        return self.snapshot_mapper.to_stored_event(event)

    def decode(self, stored: StoredEvent, wrapped_key: bytes | None) -> Relationship.Event:
        return cast(Relationship.Event, self.snapshot_mapper.to_domain_event(stored))


Codec = EventCodec | MapperCodec


def codec_for(settings: Settings, extra_transcodings: Sequence[Transcoding] = ()) -> EventCodec:
    """The codec of the settings (the cipher key is checked when they are read)."""
    return EventCodec(
        settings.cipher_key, compress=settings.compress, extra_transcodings=extra_transcodings
    )


def mapper_for(settings: Settings) -> Mapper[Any]:
    """The whole-payload mapper of earlier releases: JSON, then zlib when
    MENTORFLOW_COMPRESS is on, then AES-GCM when MENTORFLOW_CIPHER_KEY is set.
    Kept to read what they stored (and for snapshots)."""
    return make_mapper(cipher_key=settings.cipher_key, compress=settings.compress)
