"""Read model: phase statistics, for ``GET /v1/stats/phases``.

Tables ``phase_stats_relationships`` (current phase, paused, outcome) and
``phase_stats_stays`` (every stay in a phase, entered and left), migration
0013. It reads envelopes only (type, phases, occurred_at), decoding nothing
but the events that conclude a relationship (to ask their outcome), so it is the cheapest
projection to keep up to date and to rebuild.

Figures (see :func:`phase_stats`):

- ``phases``: relationships per current phase (and how many of them are paused);
- ``time_in_phase``: per phase, the median and 90th percentile of completed
  stays, in seconds, measured between the ``occurred_at`` of the event that
  entered the phase and of the one that left it (domain time, as the
  aggregate's ``phase_entered_at``; time spent paused counts). Percentiles
  interpolate linearly (PostgreSQL's ``percentile_cont``). Stays not yet
  completed are counted apart (``open_stays``), and ``concluded`` has none;
- ``funnel``: per phase, how many relationships ever reached it, from
  reflection to concluded (a withdrawn relationship reaches ``concluded``
  straight from the phase it was in), with the share of all relationships;
- ``outcomes``: concluded relationships per outcome (``withdrawn`` included);
- ``advocacy``: how often mentors advocated for their mentees
  (``advocacy.recorded``), per kind, overall and per program (table
  ``phase_stats_advocacy``, migration 0090).

The module is split in two: :mod:`projections.phase_stats_fold` (events ->
row changes, pure) and :mod:`projections.phase_stats_queries` (SQL).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from projections.base import ProjectedEvent, Projection, relationship_events
from projections.phase_stats_fold import ADVOCACY, apply, relevant
from projections.phase_stats_queries import (
    ADVOCACY_TABLE,
    NAME,
    RELATIONSHIPS,
    STAYS,
    load,
    phase_stats,
    write,
)


class PhaseStatistics(Projection):
    """Three set-based statements per batch (upsert relationships, close the
    stays that ended, insert the new ones), after one load."""

    name = NAME
    tables = (RELATIONSHIPS, STAYS, ADVOCACY_TABLE)

    def prepare(self, event: ProjectedEvent) -> None:
        """Decode ahead the events whose payload is read (their outcome, an
        advocacy's kind)."""
        if event.meta.concludes or event.type == ADVOCACY:
            event.event  # noqa: B018 - decoded now, cached on the event

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        events = [e for e in relationship_events(batch) if relevant(e)]
        if not events:
            return
        changes = await load(conn, list(dict.fromkeys(e.relationship_id for e in events)))
        for event in events:
            apply(changes, event)
        await write(conn, changes)


__all__ = ["ADVOCACY_TABLE", "NAME", "RELATIONSHIPS", "STAYS", "PhaseStatistics", "phase_stats"]
