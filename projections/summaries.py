"""Read model: relationship summaries, for listing and searching relationships.

One row per relationship (table ``relationship_summaries``, DDL in migration
0011) with what a list needs (phase, people, program) and the facts the
at-risk rules look at. Whether a relationship is at risk depends on "now", so
the rows hold facts only and :func:`list_relationships` evaluates the rules
at query time against a clock the caller passes in: a relationship becomes
at risk by time passing, without any event, timer or rewrite.

The rules (:class:`RiskPolicy`), each reported with its reason:

- ``no_recent_meeting``: in cultivation and not paused, no meeting held
  within the agreed cadence plus some grace, counted from the latest of the
  last meeting, the (re-)establishment and the last resumption;
- ``no_first_meeting``: in cultivation and not paused, no meeting held since
  it was established (or resumed) 30 days ago;
- ``overdue_action_items``: an open action item's due date has passed;
- ``open_high_concern``: a high-severity concern was raised in the current
  phase. The API has no "concern resolved" event: the workflow answers a
  concern by moving on (a review, a refinement, a conclusion), so a concern
  counts as open until the relationship changes phase;
- ``paused_too_long``: paused for more than 30 days.

A concluded relationship is never at risk.

The module is split in two: :mod:`projections.summaries_fold` (events ->
row changes, pure) and :mod:`projections.summaries_queries` (SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from projections.base import ProjectedEvent, Projection, relationship_events
from projections.summaries_fold import Summary, apply, needs_payload
from projections.summaries_queries import (
    COLUMNS,
    CURSOR_KIND,
    NAME,
    RISK_CODES,
    TABLE,
    Filters,
    RiskPolicy,
    list_relationships,
    load_rows,
    summary_item,
    upsert_rows,
)


class RelationshipSummaries(Projection):
    """Folds a batch in memory, one row per relationship touched, then writes
    those rows with one upsert: two round trips per batch, whatever its size."""

    name = NAME
    tables = (TABLE,)

    def prepare(self, event: ProjectedEvent) -> None:
        """Decode ahead the events whose payload the fold reads."""
        if needs_payload(event):
            event.event  # noqa: B018 - decoded now, cached on the event

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        events = relationship_events(batch)
        if not events:
            return
        ids = list(dict.fromkeys(event.relationship_id for event in events))
        rows: dict[UUID, Summary | None] = dict.fromkeys(ids)
        rows.update(await load_rows(conn, ids))
        for event in events:
            rows[event.relationship_id] = apply(rows[event.relationship_id], event)
        changed = [row for row in rows.values() if row is not None]
        if changed:
            await upsert_rows(conn, changed)


__all__ = [
    "COLUMNS",
    "CURSOR_KIND",
    "NAME",
    "RISK_CODES",
    "TABLE",
    "Filters",
    "RelationshipSummaries",
    "RiskPolicy",
    "Summary",
    "apply",
    "list_relationships",
    "summary_item",
]
