"""Concerns have ids and stay open until resolved (or the relationship concludes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import cast

import pytest

from domain import GuardFailed, Relationship, ValidationFailed, make_mapper
from domain.samples import walk_to
from domain.values import Actor, Envelope

ENVELOPE = Envelope(occurred_at=datetime(2025, 6, 2, 10, tzinfo=UTC), actor=Actor("a", "mentee"))
HIGH = {"category": "boundary", "severity": "high"}


def test_ids_are_assigned_when_absent_and_unique() -> None:
    r = walk_to("identification")
    first = r.record("concern.raised", HIGH, ENVELOPE)
    assert isinstance(first, Relationship.ConcernRaised)
    assert first.concern_id == "concern-1"
    r.record("concern.raised", {**HIGH, "concern_id": "concern-2"}, ENVELOPE)
    third = r.record("concern.raised", HIGH, ENVELOPE)
    assert isinstance(third, Relationship.ConcernRaised)
    assert third.concern_id == "concern-3"
    with pytest.raises(ValidationFailed) as raised:
        r.record("concern.raised", {**HIGH, "concern_id": "concern-2"}, ENVELOPE)
    assert [e.path for e in raised.value.errors] == ["data.concern_id"]


def test_resolving_an_unknown_or_resolved_concern_is_a_guard_failure() -> None:
    r = walk_to("cultivation")
    r.record("concern.raised", HIGH, ENVELOPE)
    with pytest.raises(GuardFailed) as unknown:
        r.record("concern.resolved", {"concern_id": "nope", "resolution": "addressed"}, ENVELOPE)
    assert [rule.guard for rule in unknown.value.unmet_rules] == ["concern_was_raised"]
    r.record("review.started", {"trigger": "mismatch"}, ENVELOPE)
    assert [c.concern_id for c in r.open_concerns] == ["concern-1"]  # still open
    r.record("concern.resolved", {"concern_id": "concern-1", "resolution": "addressed"}, ENVELOPE)
    resolved = r.concern("concern-1")
    assert r.open_concerns == [] and resolved is not None and resolved.resolution == "addressed"
    with pytest.raises(GuardFailed) as again:
        r.record(
            "concern.resolved", {"concern_id": "concern-1", "resolution": "referred"}, ENVELOPE
        )
    assert [rule.guard for rule in again.value.unmet_rules] == ["concern_is_still_open"]
    assert "already resolved" in str(again.value.to_dict())


def test_a_conclusion_ends_every_open_concern() -> None:
    r = walk_to("refinement")
    r.record("concern.raised", HIGH, ENVELOPE)
    r.record("relationship.concluded", {"outcome": "other"}, ENVELOPE)
    assert r.open_concerns == []


def test_a_concern_recorded_before_ids_existed_is_resolvable_by_its_number() -> None:
    r = walk_to("cultivation")
    mapper = make_mapper()
    r.record("concern.raised", HIGH, ENVELOPE)
    stored = [mapper.to_stored_event(e) for e in r.collect_events()]
    state = json.loads(stored[-1].state)
    del state["concern_id"]  # as stored before concern ids
    stored[-1] = type(stored[-1])(
        originator_id=stored[-1].originator_id,
        originator_version=stored[-1].originator_version,
        topic=stored[-1].topic,
        state=json.dumps(state).encode(),
    )
    events = [cast(Relationship.Event, mapper.to_domain_event(s)) for s in stored]
    replayed: Relationship | None = None
    for event in events:
        replayed = event.mutate(replayed)
    assert replayed is not None
    assert [c.concern_id for c in replayed.open_concerns] == ["concern-1"]
    replayed.record(
        "concern.resolved", {"concern_id": "concern-1", "resolution": "withdrawn"}, ENVELOPE
    )
