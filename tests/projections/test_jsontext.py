"""The projections' fast JSON of event data equals the domain's ``event_data``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings

from domain import event_data
from domain.samples import long_history, walk_to
from projections.jsontext import data_json
from tests.projections.histories import build, steps


def _agree(events: Sequence[Any]) -> set[str]:
    seen: set[str] = set()
    for event in events:
        for redact in (False, True):
            text, hidden = data_json(event, redact=redact)
            expected = event_data(event, redacted=redact)
            assert json.loads(text) == expected, event.api_type
            assert set(hidden) <= set(expected)
        seen.add(event.api_type)
    return seen


def test_samples_agree_for_every_event_type_they_hold() -> None:
    events = [*walk_to("concluded").collect_events(), *long_history(30).collect_events()]
    assert len(_agree(events)) >= 16


@settings(max_examples=25, deadline=None)
@given(history_steps=steps())
def test_generated_histories_agree(history_steps: list[tuple[int, int, int]]) -> None:
    _agree(build(history_steps).order)
