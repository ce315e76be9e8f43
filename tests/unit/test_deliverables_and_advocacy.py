"""An agreement's time commitment and deliverables, the overdue_deliverable
rule, and advocacy (mentor only, confidential and erasable description)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from domain import ERASABLE_FIELDS, Actor, Envelope, relationship_view
from domain.catalog import CONFIDENTIAL_FIELDS, redact
from domain.errors import GuardFailed, InvalidTransition, ValidationFailed
from domain.risk import RiskFacts, evaluate
from domain.samples import agreement_data, walk_to
from projections.timeline import describe
from workflows import Phase

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
MENTEE = Envelope(occurred_at=NOW, actor=Actor("mentee-1", "mentee"))
MENTOR = Envelope(occurred_at=NOW, actor=Actor("mentor-1", "mentor"))
HOURS = "data.time_commitment"
PAPER = {
    "id": "d1",
    "description": "the pilot paper",
    "kind": "manuscript",
    "authorship": "mentee first, mentor senior",
    "due_date": "2025-09-30",
}


def _propose(**extra: object) -> object:
    relationship = walk_to("establishment")
    return relationship.record("agreement.proposed", {**agreement_data(), **extra}, MENTEE)


def test_time_commitment_and_deliverables_are_part_of_the_agreement() -> None:
    relationship = walk_to("establishment")
    relationship.record(
        "agreement.proposed",
        {
            **agreement_data(),
            "time_commitment": {"mentor_hours_per_month": 2, "mentee_hours_per_month": 7.5},
            "deliverables": [PAPER, {"id": "d2", "description": "a poster"}],
        },
        MENTEE,
    )
    agreement = relationship_view(relationship)["agreement"]
    assert agreement["time_commitment"] == {
        "mentor_hours_per_month": 2,
        "mentee_hours_per_month": 7.5,
    }
    assert agreement["deliverables"] == [PAPER, {"id": "d2", "description": "a poster"}]
    event = relationship.pending_events[-1]
    assert describe(event) == (  # type: ignore[arg-type]
        "Agreement version 2 proposed: 2 goals, monthly meetings, 2025-02-01 to 2026-01-31;"
        " 2 h a month from the mentor and 7.5 h a month from the mentee;"
        " 2 deliverables (manuscript d1 due 2025-09-30, d2)"
    )


def test_without_them_the_view_says_none() -> None:
    relationship = walk_to("establishment")
    relationship.record("agreement.proposed", agreement_data(), MENTEE)
    agreement = relationship_view(relationship)["agreement"]
    assert agreement["time_commitment"] is None and agreement["deliverables"] == []


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"time_commitment": {"mentor_hours_per_month": 745}}, f"{HOURS}.mentor_hours_per_month"),
        ({"time_commitment": {"mentee_hours_per_month": -1}}, f"{HOURS}.mentee_hours_per_month"),
        ({"time_commitment": {"hours": 1}}, "data.time_commitment.hours"),
        ({"deliverables": [{"id": "d1"}]}, "data.deliverables[0].description"),
        ({"deliverables": [{**PAPER, "kind": "book"}]}, "data.deliverables[0].kind"),
        ({"deliverables": [{**PAPER, "due_date": "soon"}]}, "data.deliverables[0].due_date"),
        ({"deliverables": [PAPER, {**PAPER, "description": "again"}]}, "data.deliverables[1].id"),
    ],
)  # fmt: skip
def test_invalid_time_commitment_or_deliverables_are_refused(
    extra: dict[str, object], path: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        _propose(**extra)
    assert path in [error.path for error in raised.value.errors]


def test_deliverable_free_text_is_erasable_and_advocacy_description_confidential() -> None:
    assert {"deliverables[].description", "deliverables[].authorship"} <= set(
        ERASABLE_FIELDS["agreement.proposed"]
    )
    assert "deliverables[].id" not in ERASABLE_FIELDS["agreement.proposed"]
    assert ERASABLE_FIELDS["advocacy.recorded"] == ("description",)
    assert CONFIDENTIAL_FIELDS["advocacy.recorded"] == frozenset({"description"})
    assert redact("advocacy.recorded", {"kind": "nomination", "description": "x"}) == {
        "kind": "nomination",
        "description": "[redacted]",
    }


def _facts(phase: str = "cultivation", **deliverables: str | None) -> RiskFacts:
    return RiskFacts(phase=phase, deliverables=deliverables, deliverables_position=42)


def test_a_deliverable_past_due_in_cultivation_is_at_risk() -> None:
    after = datetime(2025, 10, 1, 0, 0, 1, tzinfo=UTC)
    (reason,) = evaluate(_facts(d1="2025-09-30", d2=None, d3="2026-01-01"), after)
    assert reason.code == "overdue_deliverable"
    assert reason.since == datetime(2025, 10, 1, tzinfo=UTC)
    assert reason.detail == "1 deliverable past due (d1; earliest due 2025-09-30)"
    assert reason.evidence == (42,)
    assert evaluate(_facts(d1="2025-09-30"), datetime(2025, 9, 30, 23, tzinfo=UTC)) == []
    for phase in ("establishment", "refinement", "concluded"):
        assert evaluate(_facts(phase, d1="2025-09-30"), after) == []
    two = evaluate(_facts(a="2025-09-01", b="2025-08-01"), after)
    assert two[0].detail == "2 deliverables past due (b, a; earliest due 2025-08-01)"
    assert two[0].since.date() == date(2025, 8, 2)


@pytest.mark.parametrize(
    "phase", ["reflection", "identification", "establishment", "cultivation", "refinement"]
)
def test_advocacy_is_the_mentors_to_record_in_every_phase_but_concluded(phase: Phase) -> None:
    relationship = walk_to(phase)
    data = {
        "kind": "co_authorship",
        "description": "invited onto the review",
        "occurred_on": "2025-02-27",
    }
    for role in ("mentee", "program_admin"):
        envelope = Envelope(occurred_at=NOW, actor=Actor("someone", role))
        with pytest.raises(GuardFailed) as raised:
            relationship.record("advocacy.recorded", data, envelope)
        assert [rule.guard for rule in raised.value.unmet_rules] == ["recorded_by_the_mentor"]
        assert "actor.role 'mentor'" in raised.value.unmet[0]
    event = relationship.record("advocacy.recorded", data, MENTOR)
    assert describe(event) == "The mentor recorded a co-authorship made on 2025-02-27"
    relationship.record("advocacy.recorded", {"kind": "protection"}, MENTOR)
    assert relationship_view(relationship)["advocacy"] == {
        "count": 2,
        "by_kind": {"co_authorship": 1, "protection": 1},
    }


def test_advocacy_is_refused_once_concluded() -> None:
    relationship = walk_to("concluded")
    with pytest.raises(InvalidTransition):
        relationship.record("advocacy.recorded", {"kind": "introduction"}, MENTOR)


def test_the_advocacy_webhook_is_thin() -> None:
    from service.webhooks.outbox import thin_data, webhook_types
    from tests.support.projected import projected

    relationship = walk_to("cultivation")
    relationship.record(
        "advocacy.recorded",
        {
            "kind": "nomination",
            "description": "for the society's award",
            "occurred_on": "2025-03-01",
        },
        MENTOR,
    )
    (event,) = projected([relationship.pending_events[-1]])  # type: ignore[list-item]
    assert webhook_types(event) == ["relationship.advocacy.recorded"]
    data = thin_data(event, "relationship.advocacy.recorded")
    assert data == {
        "relationship_id": str(relationship.id),
        "event_type": "advocacy.recorded",
        "version": relationship.version,
        "phase": "cultivation",
        "kind": "nomination",
        "occurred_on": "2025-03-01",
    }
