"""The canonical bytes of a stored event, as an independent program recomputes
them: what each stream's hash chain covers and what the Merkle tree's leaves
hash. The same definition as the SQL function `mf_canonical` (first migration),
written again here so that checking the log does not trust a function stored
in the database it checks.

    position, stream_id, version, event_id, topic, metadata, recorded_at
    (as text, joined by 0x1F; UUIDs lower-case with hyphens; metadata as
    PostgreSQL prints the jsonb value; recorded_at as whole microseconds since
    1970-01-01T00:00:00Z), then 0x1F, then the stored payload bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

SEPARATOR = "\x1f"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def canonical(
    position: int,
    stream_id: UUID | str,
    version: int,
    event_id: UUID | str,
    topic: str,
    payload: bytes,
    metadata_text: str,
    recorded_at: datetime,
) -> bytes:
    """`metadata_text` is the jsonb metadata as PostgreSQL prints it (`metadata::text`);
    ids as UUIDs or in their canonical text form (lower case, with hyphens)."""
    head = SEPARATOR.join(
        (
            str(position),
            str(stream_id),
            str(version),
            str(event_id),
            topic,
            metadata_text,
            str(epoch_micros(recorded_at)),
        )
    )
    return head.encode() + SEPARATOR.encode() + payload
