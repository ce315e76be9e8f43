"""/openapi.json is a valid OpenAPI 3.1 document, and its request schemas accept
what the journeys send and refuse what validation refuses. Its generated
parts come from the event classes, so they cannot drift from validation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast
from uuid import uuid4

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from domain import CONFIDENTIAL_FIELDS, EVENT_CLASSES, RECORDABLE_TYPES, Relationship
from domain.catalog import data_schema
from domain.samples import DATA_SAMPLES, walk_to
from service.http.app import openapi_document
from service.webhooks.outbox import (
    CHECKPOINT_TYPE,
    TEST_TYPE,
    checkpoint_cloudevent,
    cloudevent,
    webhook_types,
)
from service.webhooks.outbox import test_cloudevent as build_test_message
from tests.e2e.journey import MENTEE, TO_CONCLUDED, TO_CULTIVATION
from tests.e2e.test_guards_over_http import SCENARIOS
from tests.support.projected import projected

DOC: dict[str, Any] = openapi_document()
EVENTS_PATH = "/v1/relationships/{id}/events"


def _resolving(schema: dict[str, Any]) -> Draft202012Validator:
    doc_with_root = {**DOC, "$id": "urn:openapi", "__root__": schema}
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(doc_with_root, default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": "urn:openapi#/__root__"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def request_validator(path: str, method: str) -> Draft202012Validator:
    body = DOC["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return _resolving(body)


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1")
    validate(DOC)


def test_no_pydantic_defs_are_left_behind() -> None:
    text = repr(DOC)
    assert "$defs" not in text
    assert "#/$defs/" not in text


def test_the_event_body_is_a_union_discriminated_by_type() -> None:
    union = DOC["components"]["schemas"]["EventPost"]
    assert union["discriminator"]["propertyName"] == "type"
    mapping = union["discriminator"]["mapping"]
    assert set(mapping) == set(RECORDABLE_TYPES)
    assert [one["$ref"] for one in union["oneOf"]] == list(mapping.values())
    for api_type, ref in mapping.items():
        component = DOC["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert component["properties"]["type"]["const"] == api_type
        data_ref = component["properties"]["data"]["$ref"]
        data = DOC["components"]["schemas"][data_ref.rsplit("/", 1)[1]]
        generated = data_schema(api_type)
        generated.pop("$defs", None)
        assert set(data["properties"]) == set(generated["properties"])
        assert data.get("required") == generated.get("required")


@pytest.mark.parametrize("api_type", sorted(RECORDABLE_TYPES))
def test_each_event_type_example_validates(api_type: str) -> None:
    ref = DOC["components"]["schemas"]["EventPost"]["discriminator"]["mapping"][api_type]
    example = DOC["components"]["schemas"][ref.rsplit("/", 1)[1]]["example"]
    assert example["data"] == DATA_SAMPLES[api_type]
    request_validator(EVENTS_PATH, "post").validate(example)


def _bodies() -> list[dict[str, Any]]:
    steps = [*TO_CULTIVATION, *TO_CONCLUDED]
    for before, refused, _ in SCENARIOS.values():
        steps += [*before, refused]
    bodies = []
    for event_type, data, actor in steps:
        body: dict[str, Any] = {"type": event_type, "actor": actor}
        if data is not None:
            body["data"] = data
        bodies.append(body)
    return bodies


def test_every_body_the_journeys_send_validates() -> None:
    events = request_validator(EVENTS_PATH, "post")
    for body in _bodies():
        events.validate(body)
    opening = request_validator("/v1/relationships", "post")
    opening.validate({"mentee_id": "mentee-1"})
    opening.validate({"mentee_id": "mentee-1", "program_id": "p1", "actor": MENTEE})


@pytest.mark.parametrize(
    "body",
    [
        {"type": "no.such.type"},
        {"type": "meeting.held", "data": {"held_at": "not a date"}},
        {"type": "feedback.given", "data": {"from_role": "mentor", "rating": 99}},
        {"type": "relationship.paused", "data": {"reason": "x"}, "surprise": 1},
        {"data": {}},
    ],
)
def test_the_event_schema_refuses_what_validation_refuses(body: dict[str, Any]) -> None:
    assert not request_validator(EVENTS_PATH, "post").is_valid(body)


def test_every_webhook_type_is_described() -> None:
    webhooks = DOC["webhooks"]
    expected = {"relationship.phase_changed", "webhook.test", "checkpoint.published"} | {
        f"relationship.{t}" for t in EVENT_CLASSES
    }
    assert set(webhooks) == expected
    for name, item in webhooks.items():
        content = item["post"]["requestBody"]["content"]["application/cloudevents+json"]
        assert content["schema"]["properties"]["type"]["const"] == "org.mentorflow." + name
        if name.startswith("relationship.") and name != "relationship.phase_changed":
            data = content["schema"]["properties"]["data"]["properties"]
            api_type = name.removeprefix("relationship.")
            assert not set(data) & CONFIDENTIAL_FIELDS.get(api_type, frozenset())


def test_every_webhook_body_the_outbox_builds_validates() -> None:
    """The bodies service.webhooks.outbox builds for a whole sample life
    validate against the `webhooks` section."""
    seen = set()
    for event in projected(cast(list[Relationship.Event], walk_to("concluded").collect_events())):
        for webhook_type in webhook_types(event):
            body = cloudevent(event, webhook_type, uuid4())
            item = DOC["webhooks"][webhook_type]["post"]["requestBody"]
            _resolving(item["content"]["application/cloudevents+json"]["schema"]).validate(body)
            seen.add(webhook_type)
    assert {"relationship.phase_changed", "relationship.relationship.opened"} <= seen
    assert len(seen) > 10


def test_the_checkpoint_message_body_validates() -> None:
    body = checkpoint_cloudevent(
        uuid4(), "example.org/log", 3, "A" * 43 + "=", "note\n", datetime(2026, 1, 1, tzinfo=UTC)
    )
    item = DOC["webhooks"][CHECKPOINT_TYPE]["post"]["requestBody"]
    _resolving(item["content"]["application/cloudevents+json"]["schema"]).validate(body)


def test_the_test_message_body_validates() -> None:
    body = build_test_message(uuid4(), uuid4(), datetime(2026, 1, 1, tzinfo=UTC))
    item = DOC["webhooks"][TEST_TYPE]["post"]["requestBody"]
    _resolving(item["content"]["application/cloudevents+json"]["schema"]).validate(body)
