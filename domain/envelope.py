"""Reading an event's envelope (who, when, correlation) from a request body."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.schema import validator_for
from domain.values import Actor, Envelope, Id


@dataclass(frozen=True, slots=True)
class EnvelopeFields:
    """The members of a request body that make its envelope (the client's part of it)."""

    occurred_at: datetime | None = None
    actor: Actor | None = None
    correlation_id: Id | None = None
    causation_id: Id | None = None


ENVELOPE_KEYS = frozenset(validator_for(EnvelopeFields, kind="envelope").fields)
"""The members of a request body that belong to the envelope."""

EVENT_BODY_KEYS = frozenset({"type", "data"}) | ENVELOPE_KEYS
"""The members of an event's request body: its type, its data and its envelope."""


def parse_envelope(body: Mapping[str, Any], *, source: str | None, now: datetime) -> Envelope:
    """The envelope of a request: ``occurred_at`` (default ``now``), ``actor``,
    ``correlation_id``, ``causation_id``; ``source`` is the API token's name.

    Other members of ``body`` (``type``, ``data``, ``mentee_id``...) are
    ignored here. Raises :class:`ValidationFailed` with paths such as ``actor.role``.
    """
    raw = {key: value for key, value in body.items() if key in ENVELOPE_KEYS}
    fields = validator_for(EnvelopeFields, kind="envelope").parse(raw, "")
    return Envelope(
        occurred_at=fields.get("occurred_at") or now,
        actor=fields.get("actor"),
        source=source,
        correlation_id=fields.get("correlation_id"),
        causation_id=fields.get("causation_id"),
        received_at=now,
    )
