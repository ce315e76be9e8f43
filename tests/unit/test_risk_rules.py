"""The at-risk rules as pure functions (domain/risk.py): facts and "now" in, reasons out."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from domain.risk import (
    DEFAULT_POLICY,
    RISK_CODES,
    OpenConcern,
    Reason,
    RiskFacts,
    RiskPolicy,
    change,
    evaluate,
)

AT = datetime(2025, 3, 3, 9, tzinfo=UTC)
DAY = timedelta(days=1)


def codes(facts: RiskFacts, now: datetime, policy: RiskPolicy = DEFAULT_POLICY) -> list[str]:
    return [reason.code for reason in evaluate(facts, now, policy)]


def cultivating(**changes: object) -> RiskFacts:
    fields: dict[str, object] = {
        "phase": "cultivation",
        "phase_entered_at": AT,
        "phase_entered_position": 9,
        "cadence": "weekly",
        "meeting_clock_at": AT,
        "meeting_clock_position": 9,
        "meetings_since_established": 1,
        **changes,
    }
    return RiskFacts(**fields)  # type: ignore[arg-type]  # each value is its field's type


def test_the_cadence_and_its_grace() -> None:
    facts = cultivating()
    assert codes(facts, AT + 10 * DAY) == []  # weekly: 7 days + 3 of grace
    (reason,) = evaluate(facts, AT + 10 * DAY + timedelta(seconds=1))
    assert reason.code == "no_recent_meeting" and reason.since == AT + 10 * DAY
    assert reason.evidence == (9,)
    assert codes(cultivating(paused=True), AT + 100 * DAY) == []


def test_no_first_meeting() -> None:
    facts = cultivating(meetings_since_established=0, cadence="quarterly")
    assert codes(facts, AT + 30 * DAY) == []
    assert codes(facts, AT + 31 * DAY) == ["no_first_meeting"]
    policy = RiskPolicy(first_meeting_within=60 * DAY)
    assert codes(facts, AT + 31 * DAY, policy) == []


def test_overdue_action_items_list_their_meetings() -> None:
    facts = cultivating(
        open_action_items={"a1": "2025-03-05", "a2": None, "a3": "2025-03-20"},
        action_item_positions={"a1": 11, "a2": 12, "a3": 13},
    )
    now = datetime(2025, 3, 6, 0, 0, 1, tzinfo=UTC)
    (reason,) = [r for r in evaluate(facts, now) if r.code == "overdue_action_items"]
    assert reason.evidence == (11,) and reason.since == datetime(2025, 3, 6, tzinfo=UTC)
    assert "a1" in reason.detail and "a3" not in reason.detail


def test_open_high_concerns_and_a_concluded_relationship() -> None:
    concerns = {
        "c1": OpenConcern("low", AT, 20),
        "c2": OpenConcern("high", AT + DAY, 21),
        "c3": OpenConcern("high", AT + 2 * DAY, 22),
    }
    facts = RiskFacts(phase="refinement", open_concerns=concerns)
    (reason,) = evaluate(facts, AT + 3 * DAY)
    assert reason.code == "open_high_concern" and reason.evidence == (21, 22)
    assert reason.since == AT + DAY
    assert evaluate(RiskFacts(phase="concluded", open_concerns=concerns), AT + 3 * DAY) == []


def test_paused_past_the_expected_return_or_too_long() -> None:
    expected = RiskFacts(
        phase="cultivation",
        paused=True,
        paused_since=AT,
        paused_position=30,
        expected_resume=date(2025, 3, 10),
    )
    assert codes(expected, datetime(2025, 3, 17, tzinfo=UTC)) == []
    (reason,) = evaluate(expected, datetime(2025, 3, 17, 0, 1, tzinfo=UTC))
    assert reason.code == "paused_too_long" and reason.evidence == (30,)
    open_ended = RiskFacts(phase="establishment", paused=True, paused_since=AT)
    assert codes(open_ended, AT + 30 * DAY) == []
    assert codes(open_ended, AT + 31 * DAY) == ["paused_too_long"]


def test_a_phase_stalled() -> None:
    facts = RiskFacts(phase="identification", phase_entered_at=AT, phase_entered_position=3)
    assert codes(facts, AT + 60 * DAY) == []
    (reason,) = evaluate(facts, AT + 61 * DAY)
    assert reason.code == "phase_stalled" and reason.evidence == (3,)
    policy = RiskPolicy(stall_limits={"identification": 90 * DAY})
    assert codes(facts, AT + 61 * DAY, policy) == []
    assert codes(RiskFacts(phase="reflection", phase_entered_at=AT), AT + 999 * DAY) == []


def test_deadlines_past_the_last_datetime_never_come() -> None:
    last = datetime.max.replace(tzinfo=UTC)
    facts = cultivating(meeting_clock_at=last, meetings_since_established=0, phase_entered_at=last)
    assert evaluate(facts, last) == []


def test_what_to_record_when_the_set_changes() -> None:
    def reason(code: str) -> Reason:
        return Reason(code, AT, code, ())

    assert change([], []) is None
    assert change(["phase_stalled"], [reason("phase_stalled")]) is None
    flagged = change(["phase_stalled"], [reason("open_high_concern"), reason("phase_stalled")])
    assert flagged is not None and flagged.event_type == "risk.flagged"
    assert [r["code"] for r in flagged.data["reasons"]] == ["open_high_concern", "phase_stalled"]
    cleared = change(["phase_stalled", "open_high_concern"], [reason("phase_stalled")])
    assert cleared is not None and cleared.event_type == "risk.cleared"
    assert cleared.data == {"codes": ["open_high_concern"]}
    assert cleared.codes == ("phase_stalled",)
    assert len(RISK_CODES) == 7
