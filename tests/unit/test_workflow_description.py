"""What GET /v1/workflow and the diagram endpoints serve."""

import json
import shutil

import pytest

import workflows
from workflows import DiagramUnavailable, describe_workflow, diagram


def test_the_description_is_json_and_lists_phases_transitions_and_in_phase_events() -> None:
    description = describe_workflow()
    assert json.loads(json.dumps(description)) == description
    assert [phase["id"] for phase in description["phases"]] == list(workflows.PHASES)
    assert description["initial_phase"] == "reflection"
    assert description["final_phases"] == ["concluded"]
    assert description["phases"][0]["practice"] == "Self-reflect"

    transitions = {(t["event"], t["from"]): t for t in description["transitions"]}
    assert transitions[("identification.started", "reflection")]["to"] == "identification"
    assert [
        g["name"] for g in transitions[("relationship.withdrawn", "cultivation")]["guards"]
    ] == [
        "safety_override_is_set",
        "justification_is_given",
    ]
    assert transitions[("relationship.withdrawn", "reflection")]["guards"] == []
    guard = transitions[("mentor.selected", "identification")]["guards"][-1]
    assert guard == {
        "name": "mentor_consented",
        "kind": "rule",
        "rule": "the mentor consented (mentor_consent is true)",
        "unmet": "the mentor must consent: send mentor_consent true once they have agreed",
    }

    in_phase = {entry["event"]: entry["phases"] for entry in description["in_phase_events"]}
    assert in_phase["meeting.held"] == ["cultivation", "refinement"]
    assert in_phase["relationship.paused"] == ["establishment", "cultivation"]
    assert len(in_phase) == 19


def test_the_description_states_the_pause_rules() -> None:
    rules = describe_workflow()["pause_rules"]
    assert rules["pausable_phases"] == ["establishment", "cultivation"]
    assert rules["accepted_while_paused"] == [
        "advocacy.recorded",
        "concern.raised",
        "concern.resolved",
        "reflection.recorded",
        "relationship.resumed",
        "relationship.withdrawn",
        "risk.cleared",
        "risk.flagged",
    ]


def test_the_description_is_a_fresh_copy() -> None:
    describe_workflow()["phases"].clear()
    assert describe_workflow()["phases"]


def test_the_mermaid_diagram_shows_every_event_type() -> None:
    text = diagram("mermaid")
    assert text.startswith("stateDiagram-v2")
    for event_type in workflows.EVENT_TYPES:
        assert event_type in text, event_type
    assert "cultivation --> refinement : review.started [is_not_paused]" in text
    assert "cultivation : relationship.resumed [is_paused]" in text
    assert "identification : candidate.met" in text


def test_svg_needs_no_system_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    drawn = diagram("svg")
    assert drawn.startswith("<svg") and drawn.rstrip().endswith("</svg>")
    for phase in workflows.PHASES:
        assert f'data-phase="{phase}"' in drawn, phase


def test_dot_without_pydot_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflows.describe, "find_spec", lambda _name: None)
    with pytest.raises(DiagramUnavailable, match="pip install pydot"):
        diagram("dot")


def test_unknown_diagram_format() -> None:
    with pytest.raises(ValueError, match="use mermaid, svg or dot"):
        diagram("png")
