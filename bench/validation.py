"""What validating a request body costs, as ratios to reading it.

    python bench/validation.py [--repeat 15] [--number 2000]

For a few representative request bodies, it measures the validation the
service does before deciding an event: the envelope (``parse_envelope``) and
the event's ``data`` (``Event.parse``), with and without errors. Every figure
is the best of ``--repeat`` runs, next to a baseline in the same process:
``json.loads`` of the same body, which any request must at least do, so the
ratios hold across machines even when the absolute numbers do not.
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/http.py would shadow http

from domain import ValidationFailed, event_class, parse_envelope  # noqa: E402
from domain.samples import agreement_data  # noqa: E402

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ENVELOPE = {
    "occurred_at": "2025-02-10T16:00:00+01:00",
    "actor": {"id": "mentee-1", "role": "mentee"},
    "correlation_id": "c-42",
}

BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("small", "feedback.given", {"from_role": "mentee", "rating": 4, "comment": "helpful"}),
    (
        "medium",
        "meeting.held",
        {
            "meeting_id": "m1",
            "held_at": "2025-02-10T15:00:00Z",
            "duration_minutes": 60,
            "agenda_set_by": "mentee",
            "topics": ["paper outline", "grant budget"],
            "action_items": [
                {"id": "a1", "description": "send outline", "owner": "mentee"},
                {
                    "id": "a2",
                    "description": "read draft",
                    "owner": "mentor",
                    "due_date": "2025-03-01",
                },
            ],
            "notes": "good first meeting",
        },
    ),
    ("large", "agreement.proposed", agreement_data(("g1", "g2", "g3", "g4"))),
    (
        "4 errors",
        "agreement.proposed",
        {
            **agreement_data(),
            "objectives": [],
            "goals": [{"id": "g1", "statement": "s", "target_date": "never"}, {"statement": "t"}],
            "cadence": {"frequency": "hourly"},
        },
    ),
]


def best_of(repeat: int, number: int, function: Callable[[], object]) -> float:
    """Best wall time of one call, in seconds (``number`` calls per run, averaged)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            function()
        best = min(best, (time.perf_counter() - started) / number)
    return best


def validate(event_type: str, body: dict[str, Any]) -> None:
    cls = event_class(event_type)
    try:
        parse_envelope(body, source="bench", now=NOW)
        cls.parse(body["data"])
    except ValidationFailed:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=2000)
    arguments = parser.parse_args()
    repeat, number = arguments.repeat, arguments.number

    print(f"{'body':<32} {'bytes':>6} {'json.loads':>11} {'validate':>10} {'x json.loads':>13}")
    print("-" * 76)
    for label, event_type, data in BODIES:
        body = {"type": event_type, "data": data, **ENVELOPE}
        raw = json.dumps(body).encode()
        validate(event_type, body)  # build whatever is built lazily
        baseline = best_of(repeat, number, partial(json.loads, raw))
        seconds = best_of(repeat, number, partial(validate, event_type, body))
        print(
            f"{label + ' (' + event_type + ')':<32} {len(raw):>6} {baseline * 1e6:>8.2f} us"
            f" {seconds * 1e6:>7.2f} us {seconds / baseline:>12.2f}x"
        )


if __name__ == "__main__":
    main()
