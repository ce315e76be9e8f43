"""docs/events.md is what docs/tools/events_md.py prints, names every
recordable event type, and its examples pass the domain's validation."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from domain import RECORDABLE_TYPES, event_class
from tests.docs.examples import DOCS, EVENTS_MD, event_examples


def _generator() -> ModuleType:
    path = DOCS / "tools" / "events_md.py"
    spec = importlib.util.spec_from_file_location("mentorflow_docs_events_md", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_page_is_what_the_generator_prints() -> None:
    assert EVENTS_MD.read_text() == _generator().render(), (
        "docs/events.md is stale: run .venv/bin/python docs/tools/events_md.py > docs/events.md"
    )


def test_every_recordable_type_has_a_section_and_an_example() -> None:
    text = EVENTS_MD.read_text()
    for event_type in RECORDABLE_TYPES:
        assert f"\n## {event_type}\n" in text, event_type
    assert set(event_examples()) == set(RECORDABLE_TYPES)


@pytest.mark.parametrize("event_type", sorted(RECORDABLE_TYPES))
def test_each_example_passes_the_domain_validator(event_type: str) -> None:
    body = event_examples()[event_type]
    assert set(body) <= {"type", "data", "actor"}
    event_class(event_type).parse(body.get("data"), path="data")  # raises if invalid
