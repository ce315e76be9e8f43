"""Read model: relationship summaries, for listing and searching relationships.

One row per relationship (table ``relationship_summaries``, DDL in migration
0011) with what a list needs (phase, people, program) and the facts the
at-risk rules look at. Whether a relationship is at risk depends on "now", so
the rows hold facts only and :func:`list_relationships` evaluates the rules
at query time against a clock the caller passes in: a relationship becomes
at risk by time passing, without any event, timer or rewrite.

The rules themselves are the domain's (:mod:`domain.risk`: pure functions of
a row's facts and "now"); their SQL conditions, which the list's ``at_risk``
filter and the risk worker's indexed queries use, are in
:mod:`projections.risk_sql` and :mod:`projections.risk_queries`. A concern
counts as open until it is resolved (``concern.resolved``) or the
relationship concludes; a concluded relationship is never at risk.

The module is split in two: :mod:`projections.summaries_fold` (events ->
row changes, pure) and :mod:`projections.summaries_queries` (SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from domain.risk import RISK_CODES, RiskPolicy
from projections.base import ProjectedEvent, Projection, relationship_events
from projections.summaries_fold import Summary, apply, needs_payload
from projections.summaries_queries import (
    COLUMNS,
    CURSOR_KIND,
    NAME,
    TABLE,
    Filters,
    list_relationships,
    load_rows,
    risk_reasons,
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
    "risk_reasons",
    "summary_item",
]
