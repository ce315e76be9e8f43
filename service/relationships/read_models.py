"""What the HTTP routes (and the auditor's command line) ask the read models.

One object, :class:`ReadModels`, answers every read endpoint that is not a
plain load of the aggregate: the relationship list, the timeline, the audit
trail and its verification, the phase statistics. It supplies what the
projections cannot have themselves: a connection, the clock (at-risk flags
depend on "now"), the decoding of confidential fields for roles that may read
them (they are never stored in a read model), and read-your-writes waits.

Every method returns JSON-ready dicts, or None for an unknown relationship,
and raises :class:`projections.InvalidQuery` for a bad parameter (a 422 with
``errors: [{path, message}]``) and ``StoreUnavailable`` when the database is away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain import Relationship
from projections import Filters, RiskPolicy
from projections import mentee_network as network_model
from projections import phase_stats as stats_model
from projections import summaries as summaries_model
from projections import timeline as timeline_model
from projections.audit import audit_entry
from projections.paging import next_cursor, page_request
from service.projection_runner import ProjectionRunner, projected_event
from service.store.eventstore import EventStore, StreamChain
from service.store.records import StoredRecord, VerifyResult

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
AUDIT_CURSOR = "audit"
VERIFY_PAGE = 1000


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StreamCheck:
    """The verification of one relationship's history."""

    relationship_id: UUID
    valid: bool
    checked: int
    first_invalid_version: int | None = None
    first_invalid_event_id: UUID | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "relationship_id": str(self.relationship_id),
            "valid": self.valid,
            "checked": self.checked,
            "first_invalid_version": self.first_invalid_version,
            "first_invalid_event_id": (
                None if self.first_invalid_event_id is None else str(self.first_invalid_event_id)
            ),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class LogCheck:
    """The verification of every relationship and of the global log."""

    streams_checked: int
    events_checked: int
    broken: list[StreamCheck]
    missing_positions: list[int]
    """Positions handed out but holding no event now (at most 100 are listed)."""

    @property
    def valid(self) -> bool:
        return not self.broken and not self.missing_positions

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "streams_checked": self.streams_checked,
            "events_checked": self.events_checked,
            "broken": [check.to_dict() for check in self.broken],
            "missing_positions": self.missing_positions,
        }


class ReadModels:
    """Queries over the projections and the event store (see the module docstring).

    ``runner`` (optional) serves ``min_position`` waits; ``clock`` is what
    "now" means for the at-risk rules (tests pass a controllable one).
    """

    def __init__(
        self,
        store: EventStore,
        decode: Callable[[StoredRecord], Relationship.Event],
        runner: ProjectionRunner | None = None,
        *,
        clock: Clock = utc_now,
        policy: RiskPolicy | None = None,
        consistency_timeout: float = 5.0,
    ) -> None:
        self.store = store
        self._decode = decode
        self.runner = runner
        self.clock = clock
        self.policy = policy or RiskPolicy()
        self.consistency_timeout = consistency_timeout

    # --- projections -------------------------------------------------------------------

    async def list_relationships(
        self,
        *,
        phase: str | None = None,
        mentee_id: str | None = None,
        mentor_id: str | None = None,
        program_id: str | None = None,
        program_ids: Collection[str] | None = None,
        at_risk: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        min_position: int | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/relationships``: ``{"items": [...], "next_cursor": str | None}``;
        ``program_ids`` (a token's programs) keeps only relationships of those."""
        await self._settle(summaries_model.NAME, min_position)
        filters = Filters(
            phase,
            mentee_id,
            mentor_id,
            program_id,
            at_risk,
            None if program_ids is None else tuple(sorted(program_ids)),
        )
        now = self.clock()
        return await self.store.with_connection(
            lambda conn: summaries_model.list_relationships(
                conn, filters=filters, limit=limit, cursor=cursor, now=now, policy=self.policy
            )
        )

    async def risk_reasons(self, relationship_id: UUID) -> list[dict[str, Any]]:
        """The reasons a relationship is at risk now, each with the positions of
        the events that make it true (empty until its summary exists)."""
        now = self.clock()
        reasons = await self.store.with_connection(
            lambda conn: summaries_model.risk_reasons(
                conn, relationship_id, now=now, policy=self.policy
            )
        )
        return reasons or []

    async def timeline(
        self,
        relationship_id: UUID,
        *,
        redact: bool,
        limit: int | None = None,
        cursor: str | None = None,
        min_position: int | None = None,
    ) -> dict[str, Any] | None:
        """``GET /v1/relationships/{id}/timeline``; ``redact=True`` for the
        auditor role. The page's events are decoded from the event store."""
        await self._settle(timeline_model.NAME, min_position)
        return await self.store.with_connection(
            lambda conn: timeline_model.timeline(
                conn,
                relationship_id,
                self._load_events,
                redact=redact,
                limit=limit,
                cursor=cursor,
            )
        )

    async def phase_stats(
        self, *, min_position: int | None = None, program_ids: Collection[str] | None = None
    ) -> dict[str, Any]:
        """``GET /v1/stats/phases``; ``projected_through`` says how recent it is;
        ``program_ids`` (a token's programs) counts only relationships of those."""
        await self._settle(stats_model.NAME, min_position)
        programs = None if program_ids is None else sorted(program_ids)
        body = await self.store.with_connection(
            lambda conn: stats_model.phase_stats(conn, program_ids=programs)
        )
        if self.runner is not None:
            body["projected_through"] = await self.runner.checkpoint(stats_model.NAME)
        return body

    async def mentee_network(
        self,
        mentee_id: str,
        *,
        program_ids: Collection[str] | None = None,
        min_position: int | None = None,
    ) -> dict[str, Any] | None:
        """``GET /v1/mentees/{mentee_id}``: the mentee's relationships, mentors,
        current count and cycles; None when none is visible (``program_ids``:
        a token's programs)."""
        await self._settle(summaries_model.NAME, min_position)
        programs = None if program_ids is None else sorted(program_ids)
        members = await self.store.with_connection(
            lambda conn: network_model.mentee_relationships(conn, mentee_id, programs)
        )
        return network_model.network(mentee_id, members) if members else None

    async def _settle(self, name: str, min_position: int | None) -> None:
        """Read-your-writes: wait (bounded) until ``name`` has projected ``min_position``."""
        if min_position is not None and self.runner is not None:
            await self.runner.wait_until_projected(name, min_position, self.consistency_timeout)

    async def _load_events(
        self, relationship_id: UUID, versions: Sequence[int]
    ) -> Mapping[int, Relationship.Event]:
        """Some events of a relationship, decoded from the store (one read). An
        event that no longer decodes is left out: verify will say why."""
        wanted = set(versions)
        records = await self.store.read_stream(
            relationship_id, from_version=min(wanted), to_version=max(wanted)
        )
        events: dict[int, Relationship.Event] = {}
        for record in records:
            if record.version in wanted:
                try:
                    events[record.version] = self._decode(record)
                except Exception as exc:  # altered in the database
                    log.warning("event %s does not decode: %s", record.event_id, exc)
        return events

    # --- the audit trail (the events table itself) ----------------------------------------

    async def audit(
        self,
        relationship_id: UUID,
        *,
        redact: bool,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any] | None:
        """``GET /v1/relationships/{id}/audit``: every event with its envelope and
        chain hash (hex), in version order, paged; None for an unknown relationship."""
        request = page_request(limit, cursor, kind=AUDIT_CURSOR)
        after = request.after or 0
        records = await self.store.read_stream(
            relationship_id, from_version=after + 1, to_version=after + request.limit + 1
        )
        if not records and request.after is None:
            return None
        items = [
            audit_entry(projected_event(r, self._decode), redact=redact)
            for r in records[: request.limit]
        ]
        keys = [r.version for r in records]
        return {
            "relationship_id": str(relationship_id),
            "items": items,
            "next_cursor": next_cursor(keys, request, kind=AUDIT_CURSOR),
        }

    async def verify(self, relationship_id: UUID) -> StreamCheck | None:
        """``GET /v1/relationships/{id}/audit/verify``: recompute the hash chain
        and name the first version missing, out of place or altered (None for
        an unknown relationship). The chain alone cannot see the *last* events
        removed, so the stream is also compared with the versions the timeline
        projection has seen."""
        stored_version = await self.store.stream_version(relationship_id)
        projected_version = await self.store.with_connection(
            lambda conn: timeline_model.last_version(conn, relationship_id)
        )
        if stored_version is None and projected_version is None:
            return None
        result = await self.store.verify_stream(relationship_id)
        if result.valid and projected_version is not None:
            result = _compare_tail(result, stored_version or 0, projected_version)
        return await self._check(result)

    async def verify_all(self) -> LogCheck:
        """Every relationship's chain, plus the global positions handed out but
        absent now (an event deleted directly, even the last of a stream).

        Pages through the stream ids in id order and checks each page with
        two reads (the chains of its streams, the timeline's last versions of
        them), so the whole check costs what the log holds, once. A page gives
        the same result per stream as :meth:`verify`."""
        broken: list[StreamCheck] = []
        streams = events = 0
        after: UUID | None = None
        while True:
            ids = await self.store.stream_ids(after, VERIFY_PAGE)
            if not ids:
                break
            chains = await self.store.verify_streams(ids)
            projected = await self.store.with_connection(
                lambda conn, ids=ids: timeline_model.last_versions(conn, ids)  # type: ignore[misc]
            )
            for relationship_id in ids:
                chain = chains.get(relationship_id)
                projected_version = projected.get(relationship_id)
                if chain is None:  # its events were all deleted since the page was read
                    if projected_version is None:
                        continue
                    chain = StreamChain(VerifyResult(relationship_id, True, 0), 0)
                result = chain.result
                if result.valid and projected_version is not None:
                    result = _compare_tail(result, chain.last_version, projected_version)
                streams += 1
                events += result.checked
                if not result.valid:
                    broken.append(
                        StreamCheck(
                            relationship_id,
                            False,
                            result.checked,
                            result.first_invalid_version,
                            # a tail cut (not the chain's finding) names no stored event
                            chain.first_invalid_event_id if result is chain.result else None,
                            result.reason,
                        )
                    )
            if len(ids) < VERIFY_PAGE:
                break
            after = ids[-1]
        return LogCheck(streams, events, broken, await self.store.missing_positions())

    async def _check(self, result: VerifyResult) -> StreamCheck:
        """The result, naming the first invalid event by id when it is still there."""
        event_id = None
        if result.first_invalid_version is not None:
            records = await self.store.read_stream(
                result.stream_id,
                from_version=result.first_invalid_version,
                to_version=result.first_invalid_version,
            )
            event_id = records[0].event_id if records else None
        return StreamCheck(
            result.stream_id,
            result.valid,
            result.checked,
            result.first_invalid_version,
            event_id,
            result.reason,
        )


def _compare_tail(result: VerifyResult, stored: int, projected: int) -> VerifyResult:
    if projected <= stored:
        return result
    return VerifyResult(
        result.stream_id,
        False,
        result.checked,
        stored + 1,
        f"version {stored + 1} was recorded (the timeline projected up to version {projected})"
        " but is missing from the event store",
    )
