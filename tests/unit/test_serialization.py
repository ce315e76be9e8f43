"""Round trips through the mapper, for every event type, plain, compressed and encrypted."""

import copy
import dataclasses
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import MapperDeserialisationError, Transcoding
from hypothesis import given
from hypothesis import strategies as st

from domain import (
    EVENT_CLASSES,
    Actor,
    Envelope,
    Relationship,
    create_cipher_key,
    make_mapper,
    rebuild,
    relationship_view,
    take_snapshot,
)
from domain.metadata import ENVELOPE_FIELDS
from domain.samples import agreement_data
from domain.serialization import PayloadEncoder, _fields_written_alike, make_transcoder

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
ENVELOPE = Envelope(
    occurred_at=T0,
    actor=Actor("mentee-1", "mentee"),
    source="hr-platform",
    correlation_id="corr-1",
    causation_id="cause-1",
)
PREDECESSOR = uuid4()

FULL_AGREEMENT = {
    **agreement_data(),
    "goals": [
        {
            "id": "g1",
            "statement": "submit the paper",
            "horizon": "long",
            "measure": "submitted",
            "target_date": "2025-12-01",
        }
    ],
    "cadence": {
        "frequency": "biweekly",
        "duration_minutes": 45,
        "mode": "in_person",
        "location": "room 4",
    },
    "boundaries": "no weekend messages",
    "time_commitment": {"mentor_hours_per_month": 2, "mentee_hours_per_month": 6.5},
    "deliverables": [
        {
            "id": "d1",
            "description": "the pilot paper",
            "kind": "manuscript",
            "authorship": "mentee first, mentor senior",
            "due_date": "2025-11-30",
        }
    ],
}
MENTOR_ENVELOPE = dataclasses.replace(ENVELOPE, actor=Actor("m1", "mentor"))

# Every event type with every one of its fields given (so a lost field would show).
HISTORY: list[tuple[str, dict[str, Any] | None]] = [
    (
        "reflection.recorded",
        {
            "author_role": "mentee",
            "kind": "initial",
            "development_areas": ["grant writing"],
            "values": "candour",
            "work_style": "async",
            "notes": "private",
        },
    ),
    ("identification.started", None),
    (
        "candidate.proposed",
        {
            "mentor_id": "m1",
            "proposed_by": "matching",
            "match_score": 0.75,
            "rationale": "same field",
        },
    ),
    ("candidate.met", {"mentor_id": "m1", "met_at": "2025-01-20T15:00:00+01:00", "notes": "warm"}),
    (
        "candidate.proposed",
        {"mentor_id": "m2", "proposed_by": "mentee", "match_score": 1, "rationale": "r"},
    ),
    ("candidate.declined", {"mentor_id": "m2", "by": "mentor", "reason_code": "no_capacity"}),
    ("mentor.selected", {"mentor_id": "m1", "mentor_consent": True}),
    ("agreement.proposed", FULL_AGREEMENT),
    ("agreement.signed", {"by": "mentee", "agreement_version": 1}),
    ("relationship.paused", {"reason": "conference travel", "expected_resume": "2025-04-01"}),
    ("relationship.resumed", None),
    ("agreement.signed", {"by": "mentor", "agreement_version": 1}),
    ("relationship.established", None),
    (
        "meeting.scheduled",
        {"meeting_id": "mt1", "scheduled_for": "2025-04-02T10:00:00Z", "agenda": ["aims"]},
    ),
    (
        "meeting.held",
        {
            "meeting_id": "mt1",
            "held_at": "2025-04-02T10:05:00Z",
            "duration_minutes": 50,
            "agenda_set_by": "mentee",
            "topics": ["aims"],
            "action_items": [
                {"id": "a1", "description": "draft", "owner": "mentee", "due_date": "2025-04-20"}
            ],
            "notes": "private",
        },
    ),
    (
        "meeting.scheduled",
        {"meeting_id": "mt2", "scheduled_for": "2025-05-02T10:00:00Z", "agenda": ["x"]},
    ),
    (
        "meeting.missed",
        {"meeting_id": "mt2", "scheduled_for": "2025-05-02T10:00:00Z", "reason_code": "ill"},
    ),
    ("action_item.completed", {"action_item_id": "a1"}),
    ("goal.progressed", {"goal_id": "g1", "status": "at_risk", "note": "data late"}),
    ("feedback.given", {"from_role": "mentor", "rating": 4, "comment": "private"}),
    ("concern.raised", {"category": "boundary", "severity": "medium", "detail": "private"}),
    ("concern.resolved", {"concern_id": "concern-1", "resolution": "referred", "note": "private"}),
    (
        "advocacy.recorded",
        {"kind": "nomination", "description": "private", "occurred_on": "2025-04-10"},
    ),
    (
        "risk.flagged",
        {
            "reasons": [
                {"code": "overdue_action_items", "since": "2025-04-21T00:00:00Z", "detail": "a1"}
            ]
        },
    ),
    ("risk.cleared", {"codes": ["overdue_action_items"]}),
    ("review.started", {"trigger": "scheduled_review"}),
    (
        "reflection.recorded",
        {"author_role": "mentee", "kind": "closing", "development_areas": ["x"]},
    ),
    ("relationship.concluded", {"outcome": "partially_achieved", "summary": "paper submitted"}),
]
REFINED_AND_WITHDRAWN: list[tuple[str, dict[str, Any] | None]] = [
    *HISTORY[:-1],
    ("relationship.refined", {"reason": "new focus"}),
    (
        "relationship.withdrawn",
        {"reason_code": "safety", "safety_override": True, "justification": "boundary breach"},
    ),
]


def _envelope_for(event_type: str) -> Envelope:
    """Advocacy is the mentor's to record; everything else goes as the mentee's."""
    return MENTOR_ENVELOPE if event_type == "advocacy.recorded" else ENVELOPE


def _events(history: list[tuple[str, dict[str, Any] | None]]) -> list[Relationship.Event]:
    relationship = Relationship.open(
        {
            "mentee_id": "mentee-1",
            "mentee_name": "Ada",
            "program_id": "p1",
            "predecessor_id": str(PREDECESSOR),
        },
        ENVELOPE,
    )
    for event_type, data in history:
        relationship.record(event_type, data, _envelope_for(event_type))
    return [cast(Relationship.Event, e) for e in relationship.collect_events()]


def _erasure() -> Relationship.Event:
    relationship = Relationship.open({"mentee_id": "mentee-1"}, ENVELOPE)
    return relationship.erase({"reason": "erasure request 1234"}, ENVELOPE)


EVENTS = _events(HISTORY) + _events(REFINED_AND_WITHDRAWN)[-2:]
SAMPLES = [*EVENTS, _erasure()]
"""Every event type, with every field given."""
KEY = create_cipher_key()
MAPPERS = {
    "plain": make_mapper(),
    "zlib": make_mapper(compress=True),
    "aes": make_mapper(cipher_key=KEY),
    "aes+zlib": make_mapper(cipher_key=KEY, compress=True),
}


def _same_types(left: Any, right: Any, path: str) -> None:
    assert type(left) is type(right), f"{path}: {type(left).__name__} != {type(right).__name__}"
    if dataclasses.is_dataclass(left):
        for field in dataclasses.fields(left):
            _same_types(
                getattr(left, field.name), getattr(right, field.name), f"{path}.{field.name}"
            )
    elif isinstance(left, list):
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            _same_types(a, b, f"{path}[{index}]")
    elif isinstance(left, datetime):
        assert left.utcoffset() == right.utcoffset(), path


def test_the_sample_covers_every_event_type_and_every_field() -> None:
    assert {event.api_type for event in SAMPLES} == set(EVENT_CLASSES)
    for cls in EVENT_CLASSES.values():
        samples = [event for event in SAMPLES if type(event) is cls]
        for field in dataclasses.fields(cls):
            if field.name not in ENVELOPE_FIELDS:
                given = [getattr(event, field.name) for event in samples]
                assert any(value is not None for value in given), f"{cls.api_type}.{field.name}"


@pytest.mark.parametrize("mapper_name", MAPPERS)
@pytest.mark.parametrize(
    "event", SAMPLES, ids=[f"{e.originator_version}-{e.api_type}" for e in SAMPLES]
)
def test_round_trip_keeps_every_field_and_type(mapper_name: str, event: Relationship.Event) -> None:
    mapper = MAPPERS[mapper_name]
    stored = mapper.to_stored_event(event)
    decoded = mapper.to_domain_event(stored)
    assert decoded == event
    assert type(decoded) is type(event)
    for field in dataclasses.fields(event):
        _same_types(getattr(event, field.name), getattr(decoded, field.name), field.name)
    assert decoded.envelope == event.envelope
    assert event.envelope.source == ENVELOPE.source


def _with_more_meetings(history: list[Any]) -> list[Any]:
    """``history`` with two more rounds of cultivation after its first meeting,
    so that every kind of cultivation event comes again after itself."""
    rounds = [
        step
        for n in (8, 9)
        for step in [
            ("meeting.scheduled", {"meeting_id": f"m{n}", "scheduled_for": "2025-06-02T10:00:00Z"}),
            (
                "meeting.held",
                {
                    "meeting_id": f"m{n}",
                    "held_at": "2025-06-02T10:00:00Z",
                    "topics": ["aims", f"round {n}"],
                    "action_items": [{"id": f"a{n}", "description": "draft", "owner": "mentee"}],
                    "notes": "private",
                },
            ),
            ("action_item.completed", {"action_item_id": f"a{n}"}),
            ("goal.progressed", {"goal_id": "g1", "status": "on_track", "note": "private"}),
            ("feedback.given", {"from_role": "mentee", "rating": 5, "comment": "private"}),
        ]
    ]
    first = next(i for i, (event_type, _) in enumerate(history) if event_type == "meeting.held")
    return [*history[: first + 1], *rounds, *history[first + 1 :]]


@pytest.mark.parametrize(
    "history",
    [_with_more_meetings(HISTORY), _with_more_meetings(REFINED_AND_WITHDRAWN)],
    ids=["concluded", "withdrawn"],
)
def test_no_event_changes_once_recorded_or_replayed(history: list[Any]) -> None:
    """The repository hands the events it saved to readers in its process as
    they are, not decoded again (service/relationships/repository.py): equal
    to their decoding (above) only if nothing changes an event afterwards.
    Neither the aggregate that recorded it, nor one rebuilt from it (a load),
    may keep a list or a dict of an event and change it with a later event."""
    opened = {"mentee_id": "mentee-1", "mentee_name": "Ada", "program_id": "p1"}
    relationship = Relationship.open(opened, ENVELOPE)
    events = [cast(Relationship.Event, e) for e in relationship.collect_events()]
    copies = copy.deepcopy(events)
    for event_type, data in history:
        events.append(relationship.record(event_type, data, _envelope_for(event_type)))
        copies.append(copy.deepcopy(events[-1]))  # as it was recorded
    for cut in range(1, len(events)):
        replayed = rebuild(events[:cut])
        assert replayed is not None
        for event_type, data in history[cut - 1 :]:
            replayed.record(event_type, data, _envelope_for(event_type))
    for event, before in zip(events, copies, strict=True):
        assert vars(event) == vars(before), event.api_type


def test_encrypted_payloads_hide_confidential_text_and_need_the_key() -> None:
    held = next(e for e in EVENTS if e.api_type == "meeting.held")
    assert b"private" in MAPPERS["plain"].to_stored_event(held).state
    encrypted = MAPPERS["aes"].to_stored_event(held)
    assert b"private" not in encrypted.state
    with pytest.raises(MapperDeserialisationError):
        make_mapper(cipher_key=create_cipher_key()).to_domain_event(encrypted)


def test_compression_makes_long_payloads_smaller() -> None:
    proposal = next(e for e in EVENTS if e.api_type == "agreement.proposed")
    plain = MAPPERS["plain"].to_stored_event(proposal).state
    assert len(MAPPERS["zlib"].to_stored_event(proposal).state) < len(plain)


def test_dates_and_enums_come_back_as_the_same_types() -> None:
    proposal = next(e for e in EVENTS if isinstance(e, Relationship.AgreementProposed))
    decoded = MAPPERS["plain"].to_domain_event(MAPPERS["plain"].to_stored_event(proposal))
    assert isinstance(decoded, Relationship.AgreementProposed)
    assert type(decoded.start_date).__name__ == "date"
    assert type(decoded.goals[0]).__name__ == "Goal"
    assert decoded.cadence.frequency == "biweekly"


class ForeignUUID(UUID):
    """Stands for a driver's own UUID class (asyncpg returns one)."""


class ForeignUUIDAsHex(Transcoding):
    type = ForeignUUID
    name = "foreign_uuid"

    def encode(self, obj: UUID) -> str:
        return obj.hex

    def decode(self, data: str) -> UUID:
        return UUID(data)


def test_the_service_can_add_transcodings_of_its_own() -> None:
    opened = EVENTS[0]
    assert isinstance(opened, Relationship.Opened)
    # eventsourcing makes each event class a dataclass when it is defined; mypy
    # sees only the fields of the library's base classes, so the field is named in a dict.
    changes: dict[str, Any] = {"predecessor_id": ForeignUUID(str(PREDECESSOR))}
    foreign = dataclasses.replace(opened, **changes)
    with pytest.raises(TypeError):
        make_mapper().to_stored_event(foreign)
    mapper = make_mapper(extra_transcodings=[ForeignUUIDAsHex()])
    decoded = mapper.to_domain_event(mapper.to_stored_event(foreign))
    assert isinstance(decoded, Relationship.Opened)
    assert decoded.predecessor_id == PREDECESSOR


@pytest.mark.parametrize("mapper_name", MAPPERS)
def test_a_snapshot_round_trips(mapper_name: str) -> None:
    mapper = MAPPERS[mapper_name]
    relationship = None
    for event in EVENTS[:-2]:
        relationship = event.mutate(relationship)
    assert isinstance(relationship, Relationship)
    snapshot = take_snapshot(relationship)
    restored = mapper.to_domain_event(mapper.to_stored_event(snapshot)).mutate(None)
    assert vars(restored) == vars(relationship)
    assert relationship_view(restored) == relationship_view(relationship)


def test_every_stored_dataclass_has_a_fixed_name() -> None:
    from domain import state, values
    from domain.serialization import STORED_NAMES

    stored_modules = {values.__name__, state.__name__}
    dataclass_types = {
        obj
        for module in (values, state)
        for obj in vars(module).values()
        if isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ in stored_modules
    }
    expected = dataclass_types - {Envelope, values.NonBlank, values.MaxLength, values.Between}
    expected -= {values.MinItems, values.Assigned, values.Erasable}
    assert set(STORED_NAMES) == expected
    assert len(set(STORED_NAMES.values())) == len(STORED_NAMES)


# --- the payload encoder: orjson where it writes what the transcoder writes ---


def _state(event: Relationship.Event) -> dict[str, Any]:
    """The state a mapper encodes: the event's attributes but its identity."""
    state = dict(vars(event))
    del state["originator_id"], state["originator_version"]
    return state


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"v{e.originator_version}-{e.api_type}")
def test_the_payload_encoder_writes_the_transcoders_bytes(event: Relationship.Event) -> None:
    transcoder = make_transcoder()
    state = _state(event)
    assert PayloadEncoder(transcoder).encode(type(event), state) == transcoder.encode(state)


def test_classes_with_values_orjson_writes_differently_keep_the_transcoder() -> None:
    """UUIDs (orjson writes a bare string) and floats (NaN) are never given to orjson."""
    types = make_transcoder().types
    assert not _fields_written_alike(Relationship.Opened, types)  # predecessor_id: UUID
    assert not _fields_written_alike(Relationship.CandidateProposed, types)  # match_score
    assert _fields_written_alike(Relationship.MeetingHeld, types)
    opened = next(e for e in EVENTS if isinstance(e, Relationship.Opened))
    assert opened.predecessor_id is not None
    payload = PayloadEncoder(make_transcoder()).encode(Relationship.Opened, _state(opened))
    assert make_transcoder().decode(payload)["predecessor_id"] == opened.predecessor_id


@given(
    notes=st.text(),
    topics=st.lists(st.text(max_size=20), max_size=4),
    minutes=st.integers(0, 2**70) | st.none(),
)
def test_any_text_and_number_is_written_as_the_transcoder_writes_it(
    notes: str, topics: list[str], minutes: int | None
) -> None:
    """Escapes, non-ASCII, lone surrogates and integers beyond 64 bits (which
    orjson refuses: the transcoder then writes, or raises, as before)."""
    held = next(e for e in EVENTS if isinstance(e, Relationship.MeetingHeld))
    state = _state(held) | {"notes": notes, "topics": topics, "duration_minutes": minutes}
    transcoder = make_transcoder()
    try:
        expected = transcoder.encode(state)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            PayloadEncoder(transcoder).encode(Relationship.MeetingHeld, state)
        return
    assert PayloadEncoder(transcoder).encode(Relationship.MeetingHeld, state) == expected
