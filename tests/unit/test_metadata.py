"""One envelope (domain.metadata), one view (domain.event_view), and read
models that fold what the events say (projections.*.fold), without a database."""

from typing import Any, cast
from uuid import uuid4

import pytest

from domain import (
    Relationship,
    event_metadata,
    event_view,
    metadata_of,
    read_metadata,
)
from domain.metadata import paused_after
from domain.samples import Clock, walk_to
from projections import phase_stats_fold as stats_fold
from projections import summaries_fold
from tests.support.projected import RECORDED_AT, projected


def _history(relationship: Relationship) -> list[Relationship.Event]:
    return cast(list[Relationship.Event], relationship.collect_events())


def _withdrawn_while_paused() -> Relationship:
    clock = Clock()
    relationship = walk_to("cultivation", clock=clock)
    relationship.record("relationship.paused", {"reason": "leave"}, clock.envelope())
    relationship.record(
        "relationship.withdrawn",
        {"reason_code": "safety", "safety_override": True, "justification": "boundary"},
        clock.envelope(),
    )
    return relationship


def _concluded() -> Relationship:
    return walk_to("concluded")


@pytest.mark.parametrize("make", [_withdrawn_while_paused, _concluded])
def test_stored_metadata_reads_back_as_built(make: Any) -> None:
    for event in _history(make()):
        stored = event_metadata(event)
        assert read_metadata(stored) == metadata_of(event)
        assert "type" in stored and None not in stored.values()


@pytest.mark.parametrize("make", [_withdrawn_while_paused, _concluded])
def test_the_event_says_its_outcome_and_the_metadata_whether_it_concludes(make: Any) -> None:
    relationship = make()
    events = _history(relationship)
    concluding = [e for e in events if metadata_of(e).concludes]
    assert concluding == [events[-1]]
    assert concluding[0].concluded_outcome() == relationship.outcome is not None
    assert all(e.concluded_outcome() is None for e in events[:-1])


def test_a_pause_starts_with_paused_and_ends_with_resumed_or_a_phase_change() -> None:
    assert paused_after(False, "relationship.paused", False)
    assert paused_after(True, "meeting.held", False)
    assert not paused_after(True, "relationship.resumed", False)
    assert not paused_after(True, "relationship.withdrawn", True)
    assert not paused_after(False, "meeting.held", False)


@pytest.mark.parametrize("make", [_withdrawn_while_paused, _concluded])
def test_the_folds_agree_with_the_aggregate(make: Any) -> None:
    relationship = make()
    events = projected(_history(relationship))
    summary = None
    for event in events:
        summary = summaries_fold.apply(summary, event)
    assert summary is not None
    assert (summary.phase, summary.paused, summary.outcome) == (
        relationship.phase,
        relationship.paused,
        relationship.outcome,
    )
    changes = stats_fold.BatchChanges({}, [], {}, {})
    for event in events:
        stats_fold.apply(changes, event)
    current = changes.current[relationship.id]
    assert current is not None
    assert (current.phase, current.paused, current.outcome) == (
        relationship.phase,
        relationship.paused,
        relationship.outcome,
    )


def test_the_one_view_redacts_for_auditors() -> None:
    clock = Clock()
    relationship = walk_to("reflection", clock=clock)
    relationship.record(
        "reflection.recorded",
        {"author_role": "mentee", "kind": "interim", "notes": "private"},
        clock.envelope(),
    )
    event = _history(relationship)[-1]
    common: dict[str, Any] = {
        "event_id": uuid4(),
        "version": event.originator_version,
        "position": 7,
        "recorded_at": RECORDED_AT,
        "meta": metadata_of(event),
    }
    shown = event_view(**common, event=event, redacted=False)
    hidden = event_view(**common, event=event, redacted=True)
    assert list(shown) == [
        "position",
        "version",
        "event_id",
        "type",
        "occurred_at",
        "recorded_at",
        "actor",
        "source",
        "correlation_id",
        "causation_id",
        "from_phase",
        "to_phase",
        "data",
    ]
    assert shown["data"]["notes"] == "private"
    assert hidden["data"]["notes"] != "private"
    assert {k: v for k, v in shown.items() if k != "data"} == {
        k: v for k, v in hidden.items() if k != "data"
    }
    assert "data" not in event_view(**common, event=None, redacted=True)
