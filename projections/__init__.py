"""Read models built from the global log.

Each module owns its tables (DDL in ``service/store/migrations``), its fold
(events -> row changes, pure) and its queries (SQL); the larger ones are
packages with a ``fold`` and a ``queries`` module. A fold reads what the
events say (their metadata, ``concluded_outcome``) and never re-derives what
the aggregate decided:

- :mod:`projections.summaries`: relationship summaries with at-risk flags
  (``GET /v1/relationships``);
- :mod:`projections.timeline`: readable entries (``.../timeline``);
- :mod:`projections.phase_stats`: phase statistics (``GET /v1/stats/phases``);
- :mod:`projections.audit`: formatting of the audit trail (the events table
  itself; no table of its own).

Projections import ``domain`` and ``workflows``, never ``service``: the
runner (``service.projection_runner``) reads the log and hands them batches
of :class:`ProjectedEvent` with a connection in the checkpoint's transaction.
"""

from projections.base import ProjectedEvent, Projection, relationship_events
from projections.paging import DEFAULT_LIMIT, MAX_LIMIT, InvalidQuery
from projections.phase_stats import PhaseStatistics
from projections.summaries import Filters, RelationshipSummaries, RiskPolicy
from projections.timeline import Timeline


def all_projections() -> list[Projection]:
    """Every read model the service keeps, in the order they are listed."""
    return [RelationshipSummaries(), Timeline(), PhaseStatistics()]


__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Filters",
    "InvalidQuery",
    "PhaseStatistics",
    "ProjectedEvent",
    "Projection",
    "RelationshipSummaries",
    "RiskPolicy",
    "Timeline",
    "all_projections",
    "relationship_events",
]
