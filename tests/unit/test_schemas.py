"""The JSON Schemas of the event types' data, generated from the declarations that validate
requests, agree with the validation: what one accepts the other accepts."""

from typing import Any

import pytest

from domain import RECORDABLE_TYPES, ValidationFailed, event_class
from domain.catalog import data_schema, envelope_schema, opening_schema
from domain.samples import DATA_SAMPLES as SAMPLES
from domain.samples import HELD_AT
from domain.schema import NON_BLANK_PATTERN

jsonschema = pytest.importorskip("jsonschema")


# (event type, a change to its sample that both the schema and the validator refuse)
BROKEN: list[tuple[str, dict[str, Any]]] = [
    *((event_type, {"not_a_field": 1}) for event_type in RECORDABLE_TYPES),
    ("agreement.proposed", {"version": 2}),
    ("agreement.proposed", {"goals": []}),
    ("agreement.proposed", {"objectives": [" "]}),
    ("agreement.proposed", {"cadence": {"frequency": "daily"}}),
    ("agreement.proposed", {"start_date": "2025-13-01"}),
    ("agreement.proposed", {"goals": [{"id": "g1", "statement": "s", "smart": True}]}),
    ("reflection.recorded", {"kind": "final"}),
    ("reflection.recorded", {"development_areas": "grants"}),
    ("candidate.proposed", {"match_score": 1.5}),
    ("candidate.proposed", {"match_score": "0.5"}),
    ("candidate.proposed", {"mentor_id": "x" * 201}),
    ("mentor.selected", {"mentor_consent": "yes"}),
    ("agreement.signed", {"agreement_version": 0}),
    ("feedback.given", {"rating": 4.5}),
    ("feedback.given", {"rating": True}),
    ("meeting.held", {"action_items": [{"id": "a1", "description": "d"}]}),
    ("relationship.paused", {"reason": "\u3000"}),
]


def _validator(schema: dict[str, Any]) -> Any:
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_every_recordable_event_type_has_a_sample_here() -> None:
    assert set(SAMPLES) == set(RECORDABLE_TYPES)


@pytest.mark.parametrize("event_type", RECORDABLE_TYPES)
def test_every_recordable_event_type_has_a_strict_object_schema(event_type: str) -> None:
    schema = data_schema(event_type)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(event_class(event_type).parse(SAMPLES[event_type]))


@pytest.mark.parametrize("event_type", RECORDABLE_TYPES)
def test_a_valid_sample_validates_against_the_schema_and_the_validator(event_type: str) -> None:
    data = SAMPLES[event_type]
    assert list(_validator(data_schema(event_type)).iter_errors(data)) == []
    event_class(event_type).parse(data)


@pytest.mark.parametrize(
    ("event_type", "change"), BROKEN, ids=[f"{t}:{sorted(c)[0]}" for t, c in BROKEN]
)
def test_a_broken_sample_is_refused_by_the_schema_and_the_validator(
    event_type: str, change: dict[str, Any]
) -> None:
    data = {**SAMPLES[event_type], **change}
    assert list(_validator(data_schema(event_type)).iter_errors(data)) != []
    with pytest.raises(ValidationFailed):
        event_class(event_type).parse(data)


def test_the_schemas_carry_the_constraints() -> None:
    agreement = data_schema("agreement.proposed")
    properties = agreement["properties"]
    assert "version" not in properties  # assigned by the service
    assert set(agreement["required"]) == {
        "objectives",
        "goals",
        "cadence",
        "start_date",
        "end_date",
    }
    assert properties["objectives"]["minItems"] == 1
    assert properties["objectives"]["items"]["maxLength"] == 500
    assert properties["start_date"] == {
        "type": "string",
        "format": "date",
        "title": "Start Date",
    }
    goal = agreement["$defs"]["Goal"]
    assert goal["additionalProperties"] is False
    assert goal["properties"]["id"]["pattern"] == NON_BLANK_PATTERN
    assert {"enum": ["short", "long"], "type": "string"} in goal["properties"]["horizon"]["anyOf"]
    rating = data_schema("feedback.given")["properties"]["rating"]
    assert (rating["type"], rating["minimum"], rating["maximum"]) == ("integer", 1, 5)
    held_at = data_schema("meeting.held")["properties"]["held_at"]
    assert held_at["format"] == "date-time"
    opened = data_schema("relationship.opened")["properties"]
    assert opened["predecessor_id"]["anyOf"][0] == {"type": "string", "format": "uuid"}


def test_the_envelope_and_the_opening_body_have_schemas() -> None:
    envelope = envelope_schema()
    assert set(envelope["properties"]) == {"occurred_at", "actor", "correlation_id", "causation_id"}
    assert envelope["$defs"]["Actor"]["required"] == ["id", "role"]
    opening = opening_schema()
    assert opening["required"] == ["mentee_id"]
    assert set(opening["properties"]) == {
        "mentee_id",
        "program_id",
        "mentee_name",
        "predecessor_id",
        *envelope["properties"],
    }
    body = {"mentee_id": "u1", "actor": {"id": "u1", "role": "mentee"}, "occurred_at": HELD_AT}
    assert list(_validator(opening).iter_errors(body)) == []
    assert list(_validator(opening).iter_errors({**body, "mentor_id": "m"})) != []
    assert list(_validator(opening).iter_errors({"actor": body["actor"]})) != []


@pytest.mark.parametrize("space", [c for c in map(chr, range(0x3001)) if c.isspace()])
def test_non_blank_means_the_same_in_the_validator_and_the_schema(space: str) -> None:
    """Python's white space (what ``str.strip`` removes) is blank for both; anything
    else is not, whichever regex engine reads the pattern."""
    schema = data_schema("relationship.paused")
    parse = event_class("relationship.paused").parse
    for reason, blank in [(space, True), (space * 3, True), (f"{space}x{space}", False)]:
        refused = list(_validator(schema).iter_errors({"reason": reason})) != []
        assert refused == blank, repr(reason)
        if blank:
            with pytest.raises(ValidationFailed, match="must not be empty"):
                parse({"reason": reason})
        else:
            assert parse({"reason": reason}) == {"reason": reason}
    for visible in ["\u200b", "\ufeff", "\x00", "\x1b", "\u2060"]:  # not white space in Python
        assert parse({"reason": visible}) == {"reason": visible}
