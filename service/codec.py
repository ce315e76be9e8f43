"""The mapper the service stores events with, from its settings."""

from __future__ import annotations

import binascii
from typing import Any

from eventsourcing.persistence import Mapper

from domain import make_mapper
from service.settings import Settings, SettingsError

AES_KEY_SIZES = (16, 24, 32)


def mapper_for(settings: Settings) -> Mapper[Any]:
    """JSON, then zlib when MENTORFLOW_COMPRESS is on, then AES-GCM when
    MENTORFLOW_CIPHER_KEY is set. A bad key stops start-up with a clear message
    rather than failing on the first event."""
    if settings.cipher_key is not None:
        check_cipher_key(settings.cipher_key)
    return make_mapper(cipher_key=settings.cipher_key, compress=settings.compress)


def check_cipher_key(key: str) -> None:
    try:
        raw = binascii.a2b_base64(key.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SettingsError("MENTORFLOW_CIPHER_KEY must be base64") from exc
    if len(raw) not in AES_KEY_SIZES:
        raise SettingsError(
            f"MENTORFLOW_CIPHER_KEY must decode to 16, 24 or 32 bytes, got {len(raw)}"
        )
