"""The mapper the service stores events with, from its settings."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import Mapper

from domain import make_mapper
from service.platform.settings import Settings


def mapper_for(settings: Settings) -> Mapper[Any]:
    """JSON, then zlib when MENTORFLOW_COMPRESS is on, then AES-GCM when
    MENTORFLOW_CIPHER_KEY is set (checked when the settings are read, before
    any database is started)."""
    return make_mapper(cipher_key=settings.cipher_key, compress=settings.compress)
