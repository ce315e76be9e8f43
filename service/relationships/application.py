"""The application: the one place a command is decided and saved.

Program scopes of tokens are enforced before a route with a relationship id
runs (service.http.middleware), so only opening a relationship, which names
its program in the body, checks the caller here.

HTTP routes, the CLI and the workers parse their input, call a method here,
and render what it returns; none of them loads, decides or appends on its
own. (eventsourcing's ``Application`` and Emmett's command handler are the
models: load the aggregate, let it decide, save what it recorded, and on a
concurrent write decide again against the state the event really applies to.)

Errors are the domain's (validation, invalid transition, guard) and the ones
below; each front end maps them to its own shape (problem+json, exit codes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain import EVENT_CLASSES, Envelope, FieldError, Relationship, ValidationFailed
from service.relationships.repository import RecordedEvent, RelationshipRepository, Saved
from service.relationships.serialise import KeyedLocks
from service.store.errors import VersionConflict

DECISION_ATTEMPTS = 20
"""How often a post is decided again when other processes keep writing first."""


class ApplicationError(Exception):
    """A command the application refuses for a reason of its own (not the domain's)."""


class NotFound(ApplicationError):
    """No such relationship."""


class NotPermitted(ApplicationError):
    """The caller may not do this here (a program outside its scope)."""


class ServiceOnly(NotPermitted):
    """The event type is recorded by the service itself (``risk.*``), never posted."""

    def __init__(self, event_type: str):
        super().__init__(
            f"{event_type} is recorded by the service only (its risk worker, actor role"
            " 'system'); clients cannot post it"
        )
        self.event_type = event_type


class VersionMismatch(ApplicationError):
    """The caller pinned a version (If-Match) that is not the current one."""

    def __init__(self, expected: int, current: int | None):
        super().__init__(f'If-Match "{expected}" does not match the current version {current}')
        self.expected = expected
        self.current = current


class Contended(ApplicationError):
    """Other writers won every attempt: the caller should retry later."""


class ErasureUnavailable(ApplicationError):
    """Erasure asked for, but no cipher key is configured: erasable fields are
    not sealed under data keys, so there is no key to destroy."""


@dataclass(frozen=True)
class Caller:
    """Who asks, as the application needs to know it: the programs a token
    is limited to (None: every program)."""

    program_ids: frozenset[str] | None = None

    def sees(self, program_id: str | None) -> bool:
        return self.program_ids is None or program_id in self.program_ids


@dataclass(frozen=True)
class IdempotencyKey:
    """Makes an append idempotent in the store: the same key with the same
    fingerprint returns what the first append stored."""

    key: str
    fingerprint: bytes


@dataclass(frozen=True)
class Opened:
    relationship: Relationship
    position: int
    """The opening event's place in the global log (for read-your-writes)."""


class Application:
    """Opens relationships and records their events."""

    def __init__(
        self,
        repository: RelationshipRepository,
        *,
        on_saved: Callable[[Saved], None] = lambda _saved: None,
    ):
        self.repository = repository
        self._on_saved = on_saved
        self._locks = KeyedLocks()

    async def open_relationship(
        self,
        data: Mapping[str, Any],
        envelope: Envelope,
        *,
        caller: Caller = Caller(),
        idempotency: IdempotencyKey | None = None,
    ) -> Opened:
        """A new relationship; a new cycle (``predecessor_id``) must follow a
        concluded relationship the caller can see."""
        relationship = Relationship.open(data, envelope)
        if not caller.sees(relationship.program_id):
            programs = ", ".join(sorted(caller.program_ids or ()))
            raise NotPermitted(f"this token may open relationships only in programs {programs}")
        if relationship.predecessor_id is not None:
            await self._check_predecessor(caller, relationship.predecessor_id)
        saved = await self._save(relationship, idempotency)
        opened = saved.events[0]
        if saved.replayed:  # the first of two identical requests won: answer as it was
            first = await self.repository.load(opened.event.originator_id, version=1)
            assert first is not None
            relationship = first
        return Opened(relationship, opened.position)

    async def post_event(
        self,
        relationship_id: UUID,
        event_type: str,
        data: Mapping[str, Any] | None,
        envelope: Envelope,
        *,
        expected_version: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Saved:
        """Load, decide, save. Without ``expected_version``, concurrent posts
        to one relationship are serialised here, and one that loses to another
        process is decided again against the state it finally applies to.
        Event types the service records itself are refused (:class:`ServiceOnly`)."""
        event_class = EVENT_CLASSES.get(event_type) if isinstance(event_type, str) else None
        if event_class is not None and event_class.recorded_by_service:
            raise ServiceOnly(event_type)
        return await self._decide_and_save(
            relationship_id, event_type, data, envelope, expected_version, idempotency
        )

    async def record_by_service(
        self,
        relationship_id: UUID,
        event_type: str,
        data: Mapping[str, Any],
        envelope: Envelope,
        *,
        expected_version: int,
        idempotency: IdempotencyKey,
    ) -> Saved:
        """An event the service decides itself (the risk worker's ``risk.flagged``
        / ``risk.cleared``): decided and saved like any other, but only on the
        version it was decided from (``expected_version``) and under an
        idempotency key, so a retry or a second worker never records it twice."""
        return await self._decide_and_save(
            relationship_id, event_type, data, envelope, expected_version, idempotency
        )

    async def _decide_and_save(
        self,
        relationship_id: UUID,
        event_type: str,
        data: Mapping[str, Any] | None,
        envelope: Envelope,
        expected_version: int | None,
        idempotency: IdempotencyKey | None,
    ) -> Saved:
        async with self._locks.hold(relationship_id):
            for _ in range(DECISION_ATTEMPTS):
                relationship = await self._current(relationship_id, expected_version)
                relationship.record(event_type, data, envelope)
                try:
                    return await self._save(relationship, idempotency)
                except VersionConflict as conflict:
                    if expected_version is not None:
                        raise VersionMismatch(expected_version, conflict.current_version) from None
        raise Contended("the relationship is changing too fast to record this event; retry")

    async def erase(
        self,
        relationship_id: UUID,
        data: Mapping[str, Any] | None,
        envelope: Envelope,
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> RecordedEvent:
        """Erase the relationship's personal data: record ``personal_data.erased``.

        Its append destroys the relationship's data key, its snapshots and the
        stored idempotent responses about it, in the same transaction (a
        trigger of migration 0070), so the erasure is recorded exactly when the
        key is gone. Erasing again records nothing and returns the first
        erasure's event. Raises :class:`ErasureUnavailable` without a cipher key."""
        if not self.repository.can_erase:
            raise ErasureUnavailable(
                "erasure needs MENTORFLOW_CIPHER_KEY: without it personal data is not"
                " encrypted under per-relationship keys, so it cannot be crypto-shredded"
            )
        Relationship.PersonalDataErased.parse(data, path="")
        async with self._locks.hold(relationship_id):
            for _ in range(DECISION_ATTEMPTS):
                relationship = await self._current(relationship_id, None)
                if relationship.erased:
                    first = await self.repository.erasure_event(relationship_id)
                    assert first is not None
                    return first
                relationship.erase(data, envelope)
                try:
                    saved = await self._save(relationship, idempotency)
                except VersionConflict:
                    continue
                return saved.events[-1]
        raise Contended("the relationship is changing too fast to record this event; retry")

    async def save_decided(self, relationship: Relationship) -> Saved:
        """A relationship whose events were decided in memory, through the
        aggregate's own rules (sample data, imports), saved in one append."""
        return await self._save(relationship, None)

    async def load(
        self,
        relationship_id: UUID,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> Relationship:
        """The relationship now, or at a version or moment (time travel)."""
        if version is None and as_of is None:
            relationship = await self.repository.load_latest(relationship_id)
        else:
            relationship = await self.repository.load(relationship_id, version=version, as_of=as_of)
        if relationship is None:
            if as_of is not None:
                moment = as_of.isoformat()
                raise NotFound(f"relationship {relationship_id} did not exist at {moment}")
            raise NotFound(f"no relationship {relationship_id}")
        if version is not None and relationship.version < version:
            raise NotFound(
                f"relationship {relationship_id} has no version {version}"
                f" (it is at {relationship.version})"
            )
        return relationship

    async def _current(self, relationship_id: UUID, expected: int | None) -> Relationship:
        repository = self.repository
        relationship = await repository.load_for_update(relationship_id)
        if relationship is None:
            raise NotFound(f"no relationship {relationship_id}")
        if expected is not None and relationship.version != expected:
            repository.forget(relationship_id)  # memory may be behind another process
            relationship = await repository.load_for_update(relationship_id)
            assert relationship is not None
            if relationship.version != expected:
                raise VersionMismatch(expected, relationship.version)
        return relationship

    async def _check_predecessor(self, caller: Caller, predecessor_id: UUID) -> None:
        predecessor = await self.repository.load(predecessor_id)
        if predecessor is not None and not caller.sees(predecessor.program_id):
            predecessor = None  # another program's relationship does not exist for this caller
        if predecessor is None or predecessor.phase != "concluded":
            state = "does not exist" if predecessor is None else f"is in {predecessor.phase}"
            raise ValidationFailed(
                [
                    FieldError(
                        "predecessor_id",
                        "a new cycle must follow a concluded relationship;"
                        f" {predecessor_id} {state}",
                    )
                ]
            )

    async def _save(self, relationship: Relationship, idempotency: IdempotencyKey | None) -> Saved:
        if idempotency is None:
            saved = await self.repository.save(relationship)
        else:
            saved = await self.repository.save(
                relationship, idempotency_key=idempotency.key, fingerprint=idempotency.fingerprint
            )
        if not saved.replayed:
            self._on_saved(saved)
        return saved
