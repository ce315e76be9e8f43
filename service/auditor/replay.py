"""`mentorflow replay`: a relationship's state and timeline at any version or
moment, as an auditor reads it."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, TextIO
from uuid import UUID

from domain import relationship_view
from projections.timeline import event_entry
from service.auditor.common import NO, OK, USAGE, Format, components_for, parse_id
from service.platform.settings import Settings
from service.projection_runner import projected_event


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
    rid = parse_id(relationship_id, err)
    if rid is None:
        return USAGE
    async with components_for(settings) as session:
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
