"""Read model: the timeline, one readable entry per event of a relationship.

Each entry has its place (position, version), its envelope (type, when, who,
from where), a sentence ("Mentor m-7 selected; relationship moves to
establishment") and its data. Table ``timeline_entries`` (migrations 0012 and
0014) holds the place and the envelope, which are in clear in the event
store, and orders and pages them. The sentence and the data are rendered when
a page is read, from that page's events decoded from the event store.

So nothing of a payload is copied into the read model: payloads may be
AES-encrypted at rest, and a copy of confidential fields (notes, comments,
details, values, work style) would leak them in clear. It is also what makes
a rebuild cheap: decoding a payload costs more than everything else a rebuild
does, and a page of entries is a small fraction of the log. The auditor's
view replaces confidential fields by ``"[redacted]"`` and names them; the
sentences never quote one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from domain import EventMetadata, Relationship, confidential_fields, event_view, to_jsonable
from projections.base import ProjectedEvent, Projection, relationship_events
from projections.paging import next_cursor as _next_cursor
from projections.paging import page_request
from projections.sql import aware, insert_rows, json_rows

NAME = "timeline"
TABLE = "timeline_entries"
CURSOR_KIND = "timeline"

LoadEvents = Callable[[UUID, Sequence[int]], Awaitable[Mapping[int, Relationship.Event]]]
"""Given a relationship and versions, their events decoded from the event
store (a version whose payload no longer decodes is left out)."""


@dataclass(slots=True)
class TimelineRow:
    """One row of ``timeline_entries`` (field order = column order). Not
    frozen: a frozen dataclass pays a setattr call per field, per event."""

    relationship_id: UUID
    version: int
    position: int
    event_id: UUID
    type: str
    occurred_at: datetime
    recorded_at: datetime
    actor: Any
    source: str | None
    correlation_id: str | None
    causation_id: str | None
    from_phase: str | None
    to_phase: str | None


COLUMNS = tuple(TimelineRow.__dataclass_fields__)
_INSTANTS = ("occurred_at", "recorded_at")
_INSERT = insert_rows(TABLE, COLUMNS)
_SELECT = (
    f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"  # noqa: S608 - constants only
    " WHERE relationship_id = $1 AND version > $2 ORDER BY version LIMIT $3"
)


def timeline_row(event: ProjectedEvent) -> TimelineRow:
    """The row of one event: its place and its clear-text metadata (no decoding)."""
    meta = event.meta
    return TimelineRow(
        relationship_id=event.relationship_id,
        version=event.version,
        position=event.position,
        event_id=event.event_id,
        type=meta.type,
        occurred_at=event.occurred_at,
        recorded_at=event.recorded_at,
        actor=meta.actor,
        source=meta.source,
        correlation_id=meta.correlation_id,
        causation_id=meta.causation_id,
        from_phase=meta.from_phase,
        to_phase=meta.to_phase,
    )


def _meta(row: TimelineRow) -> EventMetadata:
    return EventMetadata(
        type=row.type,
        occurred_at=row.occurred_at,
        actor=row.actor,
        source=row.source,
        correlation_id=row.correlation_id,
        causation_id=row.causation_id,
        from_phase=row.from_phase,
        to_phase=row.to_phase,
    )


def entry(row: TimelineRow, event: Relationship.Event | None, *, redact: bool) -> dict[str, Any]:
    """An entry as the API shows it: the one view of a recorded event
    (:func:`domain.event_view`) with the sentence of its decoded event and
    the names of the fields hidden when ``redact``. Without the event (its
    payload no longer decodes, which ``verify`` reports) the entry says so
    and shows no data."""
    body = event_view(
        event_id=row.event_id,
        version=row.version,
        position=row.position,
        recorded_at=row.recorded_at,
        meta=_meta(row),
        event=event,
        redacted=redact,
    )
    if event is None:
        return body | {
            "summary": f"{row.type} (stored payload does not decode)",
            "data": {},
            "redacted": [],
        }
    data = body.pop("data")
    hidden = sorted(confidential_fields(row.type) & data.keys()) if redact else []
    return body | {"summary": describe(event), "data": data, "redacted": hidden}


def event_entry(event: ProjectedEvent, *, redact: bool) -> dict[str, Any]:
    """The entry of an event read from the store (``mentorflow replay``): the
    same as the read model's."""
    return entry(timeline_row(event), event.event, redact=redact)


class Timeline(Projection):
    """Appends one row per event (one set-based INSERT per batch)."""

    name = NAME
    tables = (TABLE,)

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        rows = [timeline_row(event) for event in relationship_events(batch)]
        if rows:
            await conn.execute(_INSERT, json_rows(rows, _INSTANTS))


async def timeline(
    conn: asyncpg.Connection,
    relationship_id: UUID,
    load_events: LoadEvents,
    *,
    redact: bool,
    limit: int | None = None,
    cursor: str | None = None,
) -> dict[str, Any] | None:
    """A page of the relationship's entries in order:
    ``{"relationship_id", "items", "next_cursor"}``; None when it has none (an
    unknown relationship, or one not projected yet). ``redact`` for the
    auditor's view. Raises :class:`~projections.paging.InvalidQuery` for a bad
    limit or cursor.
    """
    request = page_request(limit, cursor, kind=CURSOR_KIND)
    rows = await conn.fetch(_SELECT, relationship_id, request.after or 0, request.limit + 1)
    if not rows and request.after is None:
        return None
    page = [TimelineRow(*map(aware, row)) for row in rows[: request.limit]]
    events = await load_events(relationship_id, [row.version for row in page]) if page else {}
    return {
        "relationship_id": str(relationship_id),
        "items": [entry(row, events.get(row.version), redact=redact) for row in page],
        "next_cursor": _next_cursor([row["version"] for row in rows], request, kind=CURSOR_KIND),
    }


# --- the sentences -------------------------------------------------------------------------


def _words(code: str) -> str:
    return code.replace("_", " ")


def _day(value: Any) -> str:
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


def _opened(e: Any) -> str:
    who = f"{e.mentee_id} ({e.mentee_name})" if e.mentee_name else e.mentee_id
    text = f"Relationship opened for mentee {who}"
    if e.program_id:
        text += f" in program {e.program_id}"
    if e.predecessor_id:
        text += f", continuing relationship {e.predecessor_id}"
    return text


def _reflection(e: Any) -> str:
    article = "an" if e.kind[0] in "aeiou" else "a"
    text = f"The {e.author_role} recorded {article} {e.kind} reflection"
    if e.development_areas:
        text += f" (development areas: {', '.join(e.development_areas)})"
    return text


def _proposed(e: Any) -> str:
    text = f"Mentor {e.mentor_id} proposed as a candidate"
    if e.proposed_by:
        text += f" by the {e.proposed_by}"
    if e.match_score is not None:
        text += f" (match score {e.match_score:.2f})"
    return text


def _agreement(e: Any) -> str:
    goals = len(e.goals)
    text = (
        f"Agreement version {e.version} proposed: {goals} goal{'s' if goals != 1 else ''},"
        f" {e.cadence.frequency} meetings, {e.start_date.isoformat()} to {e.end_date.isoformat()}"
    )
    # both optional: agreements recorded before they existed have neither
    hours = [
        f"{_hours(value)} h a month from the {role}"
        for role, value in (
            ("mentor", getattr(e.time_commitment, "mentor_hours_per_month", None)),
            ("mentee", getattr(e.time_commitment, "mentee_hours_per_month", None)),
        )
        if value is not None
    ]
    if hours:
        text += "; " + " and ".join(hours)
    deliverables = e.deliverables or ()
    if deliverables:
        count = len(deliverables)
        listed = ", ".join(_deliverable(d) for d in deliverables)
        text += f"; {count} deliverable{'s' if count != 1 else ''} ({listed})"
    return text


def _hours(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _deliverable(d: Any) -> str:
    """A deliverable by its id, kind and due date (never its free text)."""
    text = f"{_words(d.kind)} {d.id}" if d.kind else d.id
    return text + (f" due {d.due_date.isoformat()}" if d.due_date else "")


_ADVOCACY_PHRASES: Mapping[str, str] = {
    "introduction": "an introduction",
    "nomination": "a nomination",
    "co_authorship": "a co-authorship",
    "opportunity": "an opportunity",
    "protection": "an act of protection",
}


def _advocacy(e: Any) -> str:
    """Never quotes the (confidential) description."""
    text = f"The mentor recorded {_ADVOCACY_PHRASES.get(e.kind, _words(e.kind))}"
    return text + (f" made on {e.occurred_on.isoformat()}" if e.occurred_on else "")


def _meeting_held(e: Any) -> str:
    text = f"Meeting {e.meeting_id + ' ' if e.meeting_id else ''}held on {_day(e.held_at)}"
    if e.duration_minutes:
        text += f" ({e.duration_minutes} min)"
    if e.topics:
        text += f"; topics: {', '.join(e.topics)}"
    items = len(e.action_items or ())
    if items:
        text += f"; {items} action item{'s' if items != 1 else ''} agreed"
    return text


def _meeting_missed(e: Any) -> str:
    name = f"Meeting {e.meeting_id}" if e.meeting_id else "Meeting"
    text = f"{name} planned for {_day(e.scheduled_for)} missed"
    return text + (f" ({_words(e.reason_code)})" if e.reason_code else "")


def _paused(e: Any) -> str:
    text = f"Relationship paused: {e.reason}"
    return text + (f" (expected back {e.expected_resume.isoformat()})" if e.expected_resume else "")


def _withdrawn(e: Any) -> str:
    text = f"Relationship withdrawn ({_words(e.reason_code)})"
    return text + (" under a safety override" if e.safety_override else "")


_SENTENCES: Mapping[str, Callable[[Any], str]] = {
    "relationship.opened": _opened,
    "reflection.recorded": _reflection,
    "identification.started": lambda e: "The search for a mentor started",
    "candidate.proposed": _proposed,
    "candidate.met": lambda e: f"Candidate mentor {e.mentor_id} met on {_day(e.met_at)}",
    "candidate.declined": lambda e: (
        f"Candidate mentor {e.mentor_id} declined by the {e.by} ({_words(e.reason_code)})"
    ),
    "mentor.selected": lambda e: f"Mentor {e.mentor_id} selected",
    "agreement.proposed": _agreement,
    "agreement.signed": lambda e: f"Agreement version {e.agreement_version} signed by the {e.by}",
    "relationship.established": lambda e: "Relationship established",
    "meeting.scheduled": lambda e: (
        f"Meeting {e.meeting_id} scheduled for {to_jsonable(e.scheduled_for)}"
    ),
    "meeting.held": _meeting_held,
    "meeting.missed": _meeting_missed,
    "action_item.completed": lambda e: f"Action item {e.action_item_id} completed",
    "goal.progressed": lambda e: f"Goal {e.goal_id} marked {_words(e.status)}",
    "feedback.given": lambda e: f"Feedback from the {e.from_role}: rating {e.rating}/5",
    "concern.raised": lambda e: (
        f"{e.severity.capitalize()}-severity concern raised ({_words(e.category)})"
    ),
    "concern.resolved": lambda e: f"Concern {e.concern_id} resolved ({_words(e.resolution)})",
    "advocacy.recorded": _advocacy,
    "risk.flagged": lambda e: "Flagged at risk: " + ", ".join(_words(r.code) for r in e.reasons),
    "risk.cleared": lambda e: "No longer at risk: " + ", ".join(_words(c) for c in e.codes),
    "relationship.paused": _paused,
    "relationship.resumed": lambda e: "Relationship resumed",
    "review.started": lambda e: f"Review started ({_words(e.trigger)})",
    "relationship.refined": lambda e: (
        "Relationship refined" + (f": {e.reason}" if e.reason else "")
    ),
    "relationship.concluded": lambda e: f"Relationship concluded: {_words(e.outcome)}",
    "relationship.withdrawn": _withdrawn,
}


def describe(event: Relationship.Event) -> str:
    """One sentence about the event, ending with the phase it moves to (if any).
    Never quotes a confidential field."""
    sentence_of = _SENTENCES.get(event.api_type)
    sentence = event.api_type if sentence_of is None else sentence_of(event)
    if event.changes_phase:  # an opening enters reflection from nowhere: no change
        sentence += f"; relationship moves to {event.to_phase}"
    return sentence


_LAST_VERSION = f"SELECT max(version) FROM {TABLE} WHERE relationship_id = $1"  # noqa: S608


async def last_version(conn: asyncpg.Connection, relationship_id: UUID) -> int | None:
    """The last version of the relationship the timeline has projected: what
    the store must still hold (verification compares the two)."""
    value: int | None = await conn.fetchval(_LAST_VERSION, relationship_id)
    return value


_LAST_VERSIONS = (
    f"SELECT relationship_id, max(version) AS last FROM {TABLE}"  # noqa: S608
    " WHERE relationship_id = ANY($1::uuid[]) GROUP BY relationship_id"
)


async def last_versions(
    conn: asyncpg.Connection, relationship_ids: Sequence[UUID]
) -> dict[UUID, int]:
    """`last_version` of many relationships in one query (those the timeline has)."""
    rows = await conn.fetch(_LAST_VERSIONS, list(relationship_ids))
    return {UUID(bytes=r["relationship_id"].bytes): r["last"] for r in rows}
