"""`mentorflow demo`: sample relationships across all phases, some of them at risk."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

from domain import Actor, Envelope, Relationship
from domain.samples import Clock, long_history, walk_to
from service.auditor.common import NO, OK, components_for
from service.platform.settings import Settings
from workflows import PHASES, Phase

DEMO_IDS = uuid.UUID("6d656e74-6f72-666c-6f77-2d64656d6f00")
"""The namespace of the demo relationships' ids: the same ids on every load,
so a second `demo` finds the first one's data instead of adding a copy."""


def demo_id(index: int) -> uuid.UUID:
    return uuid.uuid5(DEMO_IDS, f"demo-{index}")


async def demo(
    settings: Settings,
    *,
    now: datetime | None = None,
    force: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Load sample relationships across all phases (and a few at risk), made
    through the aggregate's rules like any posted event. Loaded once: a second
    run says so. A database that holds other data is refused unless `force`."""
    now = now or datetime.now(UTC)
    samples = demo_relationships(now)
    async with components_for(settings, existing=False) as session:
        loaded = [r for r in samples if await session.store.stream_version(r.id) is not None]
        if loaded:
            _print(out, loaded)
            print(
                f"the demo data is already loaded ({len(loaded)} relationships); nothing added",
                file=out,
            )
            return OK
        if await session.store.max_position() > 0 and not force:
            print(
                "mentorflow: this database already holds other data; run demo with --force"
                " to add the sample relationships to it anyway",
                file=err,
            )
            return NO
        for relationship in samples:
            await session.application.save_decided(relationship)
    _print(out, samples)
    print(f"loaded {len(samples)} relationships", file=out)
    return OK


def _print(out: TextIO, relationships: list[Relationship]) -> None:
    for r in relationships:
        print(f"{r.id}  {r.phase:<15} {'paused ' if r.paused else ''}{r.mentee_id}", file=out)


def demo_relationships(now: datetime) -> list[Relationship]:
    """One relationship per phase, a long one, and some that need attention."""
    months_ago = now - timedelta(days=90)
    made = [
        walk_to(
            phase,
            mentee_id=f"demo-mentee-{i}",
            mentor_id=f"demo-mentor-{i}",
            clock=Clock(months_ago, timedelta(days=3)),
            id=demo_id(i),
        )
        for i, phase in enumerate(PHASES, 1)
    ]
    made.append(
        long_history(120, clock=Clock(now - timedelta(days=40), timedelta(hours=8)), id=demo_id(10))
    )
    made.append(_then(now - timedelta(days=80), 20, "cultivation", _paused_long))
    made.append(_then(now - timedelta(days=20), 21, "cultivation", _high_concern))
    made.append(_then(now - timedelta(days=30), 22, "cultivation", _refined))
    made.append(_then(now - timedelta(days=10), 23, "identification", _withdrawn))
    return made


Steps = Callable[[Relationship, Callable[[], Envelope], datetime], None]


def _then(made_at: datetime, index: int, phase: Phase, steps: Steps) -> Relationship:
    """A relationship walked to ``phase`` a day per event from ``made_at``, then ``steps``."""
    clock = Clock(made_at, timedelta(days=1))
    mentee = f"demo-mentee-{index}"
    relationship = walk_to(
        phase, mentee_id=mentee, mentor_id=f"demo-mentor-{index}", clock=clock, id=demo_id(index)
    )
    steps(relationship, lambda: clock.envelope(mentee), clock.now)
    return relationship


def _paused_long(r: Relationship, envelope: Callable[[], Envelope], at: datetime) -> None:
    r.record("relationship.paused", {"reason": "parental leave"}, envelope())


def _high_concern(r: Relationship, envelope: Callable[[], Envelope], at: datetime) -> None:
    due = (at.date() - timedelta(days=1)).isoformat()
    r.record(
        "meeting.held",
        {
            "held_at": at.isoformat(),
            "action_items": [
                {"id": "x1", "description": "draft aims", "owner": "mentee", "due_date": due}
            ],
            "notes": "tense conversation about authorship",
        },
        envelope(),
    )
    r.record(
        "concern.raised",
        {"category": "boundary", "severity": "high", "detail": "authorship dispute"},
        envelope(),
    )


def _refined(r: Relationship, envelope: Callable[[], Envelope], at: datetime) -> None:
    r.record("review.started", {"trigger": "circumstances_changed"}, envelope())
    r.record(
        "reflection.recorded",
        {"author_role": "mentee", "kind": "interim", "notes": "new lab, new goals"},
        envelope(),
    )
    r.record("relationship.refined", {"reason": "new position"}, envelope())


def _withdrawn(r: Relationship, envelope: Callable[[], Envelope], at: datetime) -> None:
    admin = Envelope(occurred_at=envelope().occurred_at, actor=Actor("admin-1", "program_admin"))
    r.record("relationship.withdrawn", {"reason_code": "mentee_left_program"}, admin)
