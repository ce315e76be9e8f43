"""The auditor's command line, as plain async functions for ``service.cli``:
``mentorflow replay``, ``verify``, ``projections rebuild`` and ``demo``.

Each opens the store from the settings, does its work, closes the store and
returns the process exit code: 0 for success, 1 when the answer is "no" (an
unknown relationship, a broken chain), 2 for a usage error. Output goes to
``out`` (results) and ``err`` (errors, progress), so tests can capture both.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TextIO
from uuid import UUID

from domain import Actor, Envelope, Relationship, relationship_view
from domain.samples import Clock, long_history, walk_to
from projections.timeline import event_entry
from service.composition import components as composition
from service.platform.settings import Settings
from service.projection_runner import (
    RebuildFailed,
    RebuildProgress,
    projected_event,
)
from service.relationships.read_models import LogCheck, StreamCheck
from workflows import PHASES, Phase

Format = Literal["json", "text"]
OK, NO, USAGE = 0, 1, 2


def _session(
    settings: Settings, *, existing: bool = True
) -> AbstractAsyncContextManager[composition.Components]:
    """The process's components; `existing`: the command reads, so it refuses
    to start with no database."""
    return composition.opened(settings, existing=existing)


def _parse_id(raw: str | UUID, err: TextIO) -> UUID | None:
    if isinstance(raw, UUID):
        return raw
    try:
        return UUID(raw)
    except ValueError:
        print(f"mentorflow: {raw!r} is not a relationship id (a UUID)", file=err)
        return None


# --- replay ----------------------------------------------------------------------------------


async def replay(
    settings: Settings,
    relationship_id: str | UUID,
    version: int | None = None,
    as_of: datetime | None = None,
    *,
    fmt: Format = "json",
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print the relationship's state at ``version`` / ``as_of`` (latest by
    default) and its timeline up to there, as an auditor reads it
    (confidential fields redacted). Built from the event store, not from the
    read models, so it needs no running service and shows any past version."""
    rid = _parse_id(relationship_id, err)
    if rid is None:
        return USAGE
    async with _session(settings) as session:
        relationship = await session.repository.load(rid, version=version, as_of=as_of)
        if relationship is None:
            print(f"mentorflow: no relationship {rid} at that point", file=err)
            return NO
        if version is not None and relationship.version < version:
            print(
                f"mentorflow: relationship {rid} has no version {version}"
                f" (it is at {relationship.version})",
                file=err,
            )
            return NO
        records = await session.store.read_stream(rid, to_version=relationship.version)
        timeline = [event_entry(projected_event(r, session.decode), redact=True) for r in records]
    state = relationship_view(relationship)
    if fmt == "json":
        body = {"relationship": state, "timeline": timeline}
        print(json.dumps(body, indent=2, sort_keys=False), file=out)
    else:
        _print_replay(state, timeline, out)
    return OK


def _print_replay(state: dict[str, Any], timeline: list[dict[str, Any]], out: TextIO) -> None:
    paused = " (paused)" if state["paused"] else ""
    print(f"relationship {state['id']} at version {state['version']}", file=out)
    print(f"  phase: {state['phase']}{paused} since {state['current_phase_entered_at']}", file=out)
    print(f"  mentee: {state['mentee_id']}  mentor: {state['mentor_id'] or '-'}", file=out)
    print(f"  program: {state['program_id'] or '-'}  outcome: {state['outcome'] or '-'}", file=out)
    print("timeline:", file=out)
    for entry in timeline:
        actor = entry["actor"] or {}
        who = f" by {actor.get('id')} ({actor.get('role')})" if actor else ""
        print(
            f"  v{entry['version']:<4} {entry['occurred_at']}  {entry['summary']}{who}"
            f"  [source {entry['source'] or '-'}, recorded {entry['recorded_at']}]",
            file=out,
        )


# --- verify ----------------------------------------------------------------------------------


async def verify(
    settings: Settings,
    relationship_id: str | UUID | None = None,
    all: bool = False,
    *,
    fmt: Format = "text",
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Check hash chains: one relationship's, or with ``all`` every one plus
    the global positions that went missing. Exit 1 naming the first broken
    event (version and id) if anything was altered or removed."""
    if (relationship_id is None) == (not all):
        print("mentorflow: verify needs a relationship id or --all (not both)", file=err)
        return USAGE
    async with _session(settings) as session:
        models = session.read_models
        if all:
            report = await models.verify_all()
            _print_all(report, fmt, out)
            return OK if report.valid else NO
        rid = _parse_id(relationship_id or "", err)
        if rid is None:
            return USAGE
        check = await models.verify(rid)
    if check is None:
        print(f"mentorflow: no relationship {rid}", file=err)
        return NO
    print(json.dumps(check.to_dict(), indent=2) if fmt == "json" else _line(check), file=out)
    return OK if check.valid else NO


def _line(check: StreamCheck) -> str:
    if check.valid:
        return f"relationship {check.relationship_id}: valid ({check.checked} events checked)"
    event = f" (event {check.first_invalid_event_id})" if check.first_invalid_event_id else ""
    return (
        f"relationship {check.relationship_id}: BROKEN at version "
        f"{check.first_invalid_version}{event}: {check.reason}"
    )


def _print_all(report: LogCheck, fmt: Format, out: TextIO) -> None:
    if fmt == "json":
        print(json.dumps(report.to_dict(), indent=2), file=out)
        return
    for broken in report.broken:
        print(_line(broken), file=out)
    missing = report.missing_positions
    if missing:
        shown = ", ".join(str(p) for p in missing[:20]) + (" ..." if len(missing) > 20 else "")
        print(f"global log: positions missing (events deleted): {shown}", file=out)
    verdict = "valid" if report.valid else "BROKEN"
    print(
        f"{verdict}: {report.streams_checked} relationships, "
        f"{report.events_checked} events checked",
        file=out,
    )


# --- projections rebuild ---------------------------------------------------------------------


class ProgressBar:
    """A one-line progress bar on a terminal (only the final line otherwise)."""

    WIDTH = 30

    def __init__(self, stream: TextIO, name: str) -> None:
        self.stream = stream
        self.name = name
        self.live = stream.isatty()
        self._shown = 0.0

    def update(self, progress: RebuildProgress) -> None:
        now = time.monotonic()
        if self.live and now - self._shown >= 0.1:
            self._shown = now
            self.stream.write("\r" + self._text(progress))
            self.stream.flush()

    def finish(self, progress: RebuildProgress) -> None:
        self.stream.write(("\r" if self.live else "") + self._text(progress) + "\n")
        self.stream.flush()

    def _text(self, p: RebuildProgress) -> str:
        done = round(p.fraction * self.WIDTH)
        bar = "#" * done + "." * (self.WIDTH - done)
        return (
            f"{self.name:<20} [{bar}] {p.fraction:4.0%} {p.position:>10,}/{p.target:,} events"
            f"  {p.events_per_s:>9,.0f} events/s"
        )


async def rebuild(settings: Settings, name: str | None = None, *, err: TextIO = sys.stderr) -> int:
    """Rebuild one read model (or all), with a progress bar on ``err``. Safe
    while the service runs: each is built beside its serving tables and
    swapped in once complete. A rebuild that fails leaves the serving tables
    as they were and makes the exit code 1, after saying where it failed."""
    async with _session(settings) as session:
        runner = session.runner
        known = [p.name for p in runner.projections if p.rebuildable]
        names = known if name is None else [name]
        unknown = [n for n in names if n not in known]
        if unknown:
            print(
                f"mentorflow: no projection {unknown[0]!r} to rebuild; known: {', '.join(known)}",
                file=err,
            )
            return USAGE
        failed = False
        for each in names:
            bar = ProgressBar(err, each)
            try:
                report = await runner.rebuild(each, bar.update)
            except RebuildFailed as exc:
                if bar.live:
                    err.write("\n")
                print(f"mentorflow: {exc}", file=err)
                failed = True
                continue
            bar.finish(RebuildProgress(each, report.events, report.events, report.seconds))
    return NO if failed else OK


# --- demo ------------------------------------------------------------------------------------


async def demo(settings: Settings, *, now: datetime | None = None, out: TextIO = sys.stdout) -> int:
    """Load sample relationships across all phases (and a few at risk), made
    through the aggregate's rules like any posted event."""
    now = now or datetime.now(UTC)
    samples = demo_relationships(now)
    async with _session(settings, existing=False) as session:
        for relationship in samples:
            await session.repository.save(relationship)
    for r in samples:
        print(f"{r.id}  {r.phase:<15} {'paused ' if r.paused else ''}{r.mentee_id}", file=out)
    print(f"loaded {len(samples)} relationships", file=out)
    return OK


def demo_relationships(now: datetime) -> list[Relationship]:
    """One relationship per phase, a long one, and some that need attention."""
    months_ago = now - timedelta(days=90)
    made = [
        walk_to(
            phase,
            mentee_id=f"demo-mentee-{i}",
            mentor_id=f"demo-mentor-{i}",
            clock=Clock(months_ago, timedelta(days=3)),
        )
        for i, phase in enumerate(PHASES, 1)
    ]
    made.append(long_history(120, clock=Clock(now - timedelta(days=40), timedelta(hours=8))))
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
    relationship = walk_to(phase, mentee_id=mentee, mentor_id=f"demo-mentor-{index}", clock=clock)
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
