"""The risk worker: evaluates the at-risk rules as time passes, and records
``risk.flagged`` / ``risk.cleared`` when a relationship's set of reasons changes.

One worker runs at a time across processes: every process's copy competes
for an advisory lock on a dedicated connection (the projections' lease,
:func:`service.projection_runner.leadership.locked_connection`), and only the
holder evaluates. The holder runs an evaluation pass every ``interval_s``
seconds, and sooner when the relationship summaries have projected new events
(the rules read them). A pass is one indexed query per rule
(projections/risk_queries.py); the reasons are the domain's pure rules
(domain/risk.py) at the worker's clock, which tests replace. A pass on news
rechecks the relationships flagged before only where their summary changed
since the previous pass began (time alone never makes a recorded code stop
holding); the first pass, the one every ``interval_s``, and the one after a
clock set back or a change left unrecorded recheck them all. On a busy log
that is what keeps a pass on news cheap however many relationships are at
risk: 38 against 128 ms with 50,000 flagged (bench/risk.py).

Each change is recorded through the application, like any command, with actor
``{id: "mentorflow", role: "system"}``, and only on the version the summary
was evaluated at (If-Match), under an idempotency key derived from
(relationship, version, the codes now true). So a change is recorded once even
when two workers race (the lease lapsed, a network partition) or a worker
restarts before the summaries have caught up with what it recorded: the
second attempt finds the stream at another version, or replays the first.
A relationship that changed meanwhile is evaluated again in the next pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from domain import Actor, DomainError, Envelope
from domain.risk import DEFAULT_POLICY, RiskPolicy
from projections.risk_queries import Evaluated, evaluation_pass
from projections.summaries import NAME as SUMMARIES
from service.platform.metrics import Metrics
from service.projection_runner import ProjectionRunner
from service.projection_runner.leadership import locked_connection
from service.relationships.application import (
    Application,
    ApplicationError,
    IdempotencyKey,
    VersionMismatch,
)
from service.relationships.repository import Saved
from service.store.errors import IdempotencyConflict, VersionConflict

log = logging.getLogger("mentorflow.risk")

SYSTEM_ACTOR = Actor("mentorflow", "system")
SOURCE = "mentorflow-risk"
TASK_NAME = "risk-worker"
CONCURRENT_RECORDS = 16
"""Changes of different relationships recorded at once (the store commits
concurrent appends together), e.g. the first pass after an upgrade."""
MIN_PASS_INTERVAL_S = 0.5
"""A busy log brings news with every summaries batch; the rules count days, so
passes start at most this often (a pass is a query per rule)."""
NEWS_POLL_S = 1.0
"""How often a risk worker in another process than the summaries' worker
looks for new events (their checkpoint)."""

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def idempotency_key(evaluated: Evaluated) -> IdempotencyKey:
    """The same decision (relationship, version evaluated, codes now true)
    always gets the same key and fingerprint, whenever and by whom it is made."""
    codes = ",".join(evaluated.change.codes)
    key = f"mentorflow.risk\x1f{evaluated.relationship_id}\x1f{evaluated.version}\x1f{codes}"
    fingerprint = hashlib.sha256(f"{key}\x1f{evaluated.change.event_type}".encode()).digest()
    return IdempotencyKey(key, fingerprint)


@dataclass
class PassReport:
    """What one evaluation pass did."""

    evaluated_at: datetime
    changes: int = 0
    recorded: list[Saved] = field(default_factory=list)
    skipped: int = 0
    """Changes not recorded: the relationship moved on (evaluated again next pass)."""


class RiskWorker:
    """Evaluates the at-risk rules and records the changes (see the module docstring)."""

    def __init__(
        self,
        application: Application,
        runner: ProjectionRunner,
        dsn: str,
        *,
        policy: RiskPolicy = DEFAULT_POLICY,
        interval_s: float = 60.0,
        clock: Clock = utc_now,
        takeover_interval: float = 1.0,
        min_interval_s: float = MIN_PASS_INTERVAL_S,
        metrics: Metrics | None = None,
    ) -> None:
        self.application = application
        self.runner = runner
        self.store = runner.store
        self.dsn = dsn
        self.policy = policy
        self.interval_s = interval_s
        self.clock = clock
        self.takeover_interval = takeover_interval
        self.min_interval_s = min_interval_s
        self.metrics = metrics
        self.leading = False
        self.passes = 0

    @property
    def lock_key(self) -> str:
        return f"mentorflow.risk.{self.store.schema}"

    # --- one pass ------------------------------------------------------------------------

    async def evaluate_once(self, *, changed_after: int | None = None) -> PassReport:
        """Evaluate every relationship the rules may concern now, and record
        each change of its set of reasons (see :func:`idempotency_key`). With
        ``changed_after``, the relationships flagged before are looked at only
        if their summary changed after that position (a pass on news)."""
        now, started = self.clock(), time.perf_counter()
        changes = await self.store.with_connection(
            lambda conn: evaluation_pass(conn, now, self.policy, changed_after=changed_after)
        )
        report = PassReport(now, changes=len(changes))
        slots = asyncio.Semaphore(CONCURRENT_RECORDS)

        async def record(evaluated: Evaluated) -> Saved | None:
            async with slots:
                return await self._record(evaluated, now)

        for saved in await asyncio.gather(*(record(e) for e in changes)):
            if saved is None:
                report.skipped += 1
            elif not saved.replayed:
                report.recorded.append(saved)
        self.passes += 1
        if self.metrics is not None:
            self.metrics.risk_pass.observe(time.perf_counter() - started)
        return report

    async def _record(self, evaluated: Evaluated, now: datetime) -> Saved | None:
        envelope = Envelope(occurred_at=now, actor=SYSTEM_ACTOR, source=SOURCE)
        try:
            saved = await self.application.record_by_service(
                evaluated.relationship_id,
                evaluated.change.event_type,
                evaluated.change.data,
                envelope,
                expected_version=evaluated.version,
                idempotency=idempotency_key(evaluated),
            )
        except (VersionMismatch, VersionConflict, IdempotencyConflict):
            return None  # it changed since the summary was read: evaluated again next pass
        except (DomainError, ApplicationError) as exc:
            log.warning(
                "risk: %s of relationship %s not recorded: %s",
                evaluated.change.event_type,
                evaluated.relationship_id,
                exc,
            )
            return None
        if not saved.replayed:
            log.info(
                "risk: %s %s on relationship %s (version %s)",
                evaluated.change.event_type,
                ",".join(evaluated.change.codes) or "-",
                evaluated.relationship_id,
                evaluated.version,
            )
        return saved

    # --- the supervised task -------------------------------------------------------------

    async def run(self) -> None:
        """Wait for the lease, then evaluate every ``interval_s`` and on new
        events until cancelled (the body of a supervised task)."""
        async with locked_connection(
            self.dsn,
            self.store.schema,
            self.lock_key,
            wait=True,
            retry_every=self.takeover_interval,
        ) as conn:
            assert conn is not None
            self._lead(True)
            log.info("risk: this process runs the risk worker")
            try:
                await self._passes(conn)
            finally:
                self._lead(False)

    async def _passes(self, conn: asyncpg.Connection) -> None:
        """Pass after pass: a complete one first and then every ``interval_s``;
        in between, on news, passes that look at the relationships flagged
        before only where their summary changed since the previous pass began.
        After a pass that left a change unrecorded, or a clock set back, the
        next one is complete."""
        loop = asyncio.get_running_loop()
        complete_due = loop.time()
        since: int | None = None  # where the next pass on news may start looking
        last = self.clock()
        while True:
            seen = await self.runner.checkpoint(SUMMARIES)
            started, now = loop.time(), self.clock()
            complete = since is None or started >= complete_due or now < last
            report = await self.evaluate_once(changed_after=None if complete else since)
            if complete:
                complete_due = started + self.interval_s
            since, last = (seen if report.skipped == 0 else None), report.evaluated_at
            await self._wait_for_news(seen)
            await asyncio.sleep(started + self.min_interval_s - loop.time())
            if conn.is_closed():
                raise ConnectionError("the risk worker's lease connection was lost")

    def _lead(self, leading: bool) -> None:
        self.leading = leading
        if self.metrics is not None:
            self.metrics.risk_leader.set(1 if leading else 0)

    async def _wait_for_news(self, seen: int) -> None:
        """Until the summaries have projected an event after ``seen``, or
        ``interval_s`` has passed. Woken by the summaries' commits when this
        process runs their worker; otherwise their checkpoint is read every
        ``NEWS_POLL_S``."""
        if self.runner.is_leader(SUMMARIES):
            await self.runner.wait_until_projected(SUMMARIES, seen + 1, timeout=self.interval_s)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.interval_s
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(NEWS_POLL_S, remaining))
            if await self.runner.checkpoint(SUMMARIES) > seen:
                return
