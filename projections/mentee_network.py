"""A mentee's mentoring network, from the relationship summaries: every
relationship of one mentee (one indexed query: ``relationship_summaries``
by ``(mentee_id, opened_position)``, migration 0011), with the mentors they
had, how many relationships are still going, and the cycles (a relationship
opened with ``predecessor_id`` continues its predecessor's cycle).

A mentoring network is several mentors over time and at once (seed 002): the
route ``GET /v1/mentees/{mentee_id}`` shows it; a token limited to programs
sees only its programs' relationships.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from domain import to_jsonable
from projections.sql import aware
from projections.summaries_queries import TABLE

_SELECT = (
    "SELECT relationship_id, phase, paused, mentor_id, program_id, opened_at, outcome,"  # noqa: S608
    f" predecessor_id FROM {TABLE}"
    " WHERE mentee_id = $1 AND ($2::text[] IS NULL OR program_id = ANY($2::text[]))"
    " ORDER BY opened_position"
)


@dataclass(frozen=True)
class Member:
    """One relationship of the mentee, as the network shows it."""

    id: UUID
    phase: str
    paused: bool
    mentor_id: str | None
    program_id: str | None
    opened_at: datetime
    outcome: str | None
    predecessor_id: UUID | None


def _uuid(value: Any) -> UUID | None:
    return None if value is None else UUID(bytes=value.bytes)


async def mentee_relationships(
    conn: asyncpg.Connection, mentee_id: str, program_ids: Sequence[str] | None = None
) -> list[Member]:
    """The mentee's relationships in the order they were opened (only those
    of ``program_ids`` when given)."""
    programs = None if program_ids is None else list(program_ids)
    rows = await conn.fetch(_SELECT, mentee_id, programs)
    return [
        Member(
            id=UUID(bytes=row["relationship_id"].bytes),
            phase=row["phase"],
            paused=row["paused"],
            mentor_id=row["mentor_id"],
            program_id=row["program_id"],
            opened_at=aware(row["opened_at"]),
            outcome=row["outcome"],
            predecessor_id=_uuid(row["predecessor_id"]),
        )
        for row in rows
    ]


def network(mentee_id: str, members: Sequence[Member]) -> dict[str, Any]:
    """``{mentee_id, relationships, mentors, current, cycles}`` (pure).

    ``successors`` are the relationships opened to continue this one;
    ``mentors`` every mentor, in the order first selected; ``current`` how
    many are not concluded; ``cycles`` the chains of relationships linked by
    ``predecessor_id``, each in the order opened (one whose predecessor is not
    visible starts a cycle)."""
    order = {m.id: index for index, m in enumerate(members)}
    successors: dict[UUID, list[UUID]] = {m.id: [] for m in members}
    for m in members:
        if m.predecessor_id in successors:
            successors[m.predecessor_id].append(m.id)
    cycles: list[list[str]] = []
    for m in members:
        if m.predecessor_id in order:
            continue  # continues a cycle started earlier
        chain, stack = [], [m.id]
        while stack:
            current = stack.pop(0)
            chain.append(current)
            stack.extend(successors[current])
        chain.sort(key=order.__getitem__)
        cycles.append([str(i) for i in chain])
    return {
        "mentee_id": mentee_id,
        "relationships": [
            {
                "id": str(m.id),
                "phase": m.phase,
                "paused": m.paused,
                "mentor_id": m.mentor_id,
                "program_id": m.program_id,
                "opened_at": to_jsonable(m.opened_at),
                "outcome": m.outcome,
                "predecessor_id": to_jsonable(m.predecessor_id),
                "successors": [str(s) for s in successors[m.id]],
            }
            for m in members
        ],
        "mentors": list(dict.fromkeys(m.mentor_id for m in members if m.mentor_id)),
        "current": sum(1 for m in members if m.phase != "concluded"),
        "cycles": cycles,
    }
