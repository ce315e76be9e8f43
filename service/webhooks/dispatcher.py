"""Delivering the outbox: signed POSTs, retries with backoff, and the log.

Several dispatchers (in one or many processes) share the work: a message is
leased with `FOR UPDATE SKIP LOCKED` before it is sent, so in normal operation
no message goes out twice. If a dispatcher dies mid-delivery its lease runs
out and another sends the message again, with the same `webhook-id`: delivery
is at least once, and receivers deduplicate by that id.

Per relationship and endpoint, a message waits until the one before it is
delivered or has failed for good, so subscribers see each relationship's
events in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import aiohttp
import asyncpg

from service.platform.supervisor import Supervisor
from service.platform.tasks import cancel_and_wait
from service.store.errors import StoreUnavailable
from service.store.eventstore import EventStore
from service.webhooks import endpoints
from service.webhooks.outbox import webhook_channel, wire_id
from service.webhooks.sealing import PLAIN, SecretSealer
from service.webhooks.signing import signature_header
from service.webhooks.ssrf import GuardedResolver, refuse_private_literal

log = logging.getLogger(__name__)

FAILING_TOO_LONG = timedelta(days=5)
MAX_RETRY_AFTER_S = 24 * 3600.0
JITTER = 0.2
MAX_RESPONSE_BYTES = 4096
"""Read of a receiver's answer body, at most: the rest is never read."""
MAX_ERROR_CHARS = 500
MAX_HTTP_DATE_CHARS = 64
DISPATCHER_TASK = "webhook-dispatcher"
LISTENER_TASK = "webhook-listener"

CLAIM_SQL = """
UPDATE webhook_messages AS w SET lease_until = now() + make_interval(secs => $2)
  FROM (
    SELECT c.id FROM webhook_endpoints e
     CROSS JOIN LATERAL (
        SELECT m.id, m.next_attempt_at, m.position FROM webhook_messages m
         WHERE m.endpoint_id = e.id AND m.state = 'pending' AND m.next_attempt_at <= now()
           AND (m.lease_until IS NULL OR m.lease_until < now())
           AND m.id = (
               SELECT p.id FROM webhook_messages p
                WHERE p.endpoint_id = m.endpoint_id AND p.relationship_id = m.relationship_id
                  AND p.state = 'pending'
                ORDER BY p.position, p.webhook_type
                LIMIT 1)
         ORDER BY m.next_attempt_at, m.position
         LIMIT greatest(0, $3 - coalesce(
             (SELECT f.n FROM unnest($4::uuid[], $5::int[]) AS f (id, n) WHERE f.id = e.id), 0))
           FOR UPDATE OF m SKIP LOCKED) c
     WHERE e.enabled AND e.deleted_at IS NULL
     ORDER BY c.next_attempt_at, c.position
     LIMIT $1) AS claimed
 WHERE w.id = claimed.id
RETURNING w.id, w.endpoint_id, w.body, w.attempts, w.lease_until
"""
"""Claim what may be sent now: per enabled endpoint, its due messages that
are first of their relationship (per-relationship order), up to the
endpoint's free delivery slots ($3 less what it has in flight, $4/$5); at most
$1 in all, soonest due first; each leased for $2 seconds.

Shape matters (migration 0030): the endpoints drive, and each endpoint's due
messages and each relationship's first message are read by ordered,
LIMITed index scans of partial indexes over pending rows, so a claim costs
what the pending rows cost, not the delivered ones, with or without
statistics."""

_NEXT_DUE = (
    "SELECT min(next_attempt_at) FROM webhook_messages"
    " WHERE state = 'pending' AND next_attempt_at > now()"
)
"""The next retry that comes due (messages due now were just claimed, or wait
behind one in flight: a finished delivery wakes the dispatcher)."""
_RELEASE = (
    "UPDATE webhook_messages AS w SET lease_until = NULL"
    " FROM unnest($1::uuid[], $2::timestamptz[]) AS held (id, lease_until)"
    " WHERE w.id = held.id AND w.lease_until = held.lease_until AND w.state = 'pending'"
)
"""Give back leases this dispatcher still holds (a lease another dispatcher
took over after ours ran out has another lease_until and is left alone)."""
_DELIVERED = (
    "UPDATE webhook_messages SET state = 'delivered', attempts = attempts + 1,"
    " delivered_at = now(), lease_until = NULL, last_status = $2, last_error = NULL"
    " WHERE id = $1"
)
_RETRY = (
    "UPDATE webhook_messages SET attempts = attempts + 1, next_attempt_at = $2,"
    " lease_until = NULL, last_status = $3, last_error = $4 WHERE id = $1"
)
_FAILED = (
    "UPDATE webhook_messages SET state = 'failed', attempts = attempts + 1, failed_at = now(),"
    " lease_until = NULL, last_status = $2, last_error = $3 WHERE id = $1"
)
_LOG_ATTEMPT = (
    "INSERT INTO webhook_attempts (message_id, endpoint_id, attempt, attempted_at, status,"
    " latency_ms, error, next_retry_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    status: int | None
    latency_ms: float
    error: str | None
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        return self.status == 410


@dataclass(frozen=True)
class DispatcherConfig:
    retry_schedule: Sequence[float]
    allow_private: bool = False
    timeout_s: float = 10.0
    """The whole of one attempt: connecting, sending, and the answer."""
    batch_size: int = 50
    """At most this many messages claimed at once."""
    max_in_flight: int = 100
    """Deliveries under way at once, every endpoint together."""
    per_endpoint: int = 8
    """Deliveries under way at once to one endpoint: a slow endpoint ties up
    no more than this, and every other endpoint goes on."""
    lease_s: float = 60.0
    poll_interval_s: float = 1.0
    sealer: SecretSealer = PLAIN
    """Opens the stored secrets (a sealed one without the key fails loudly)."""


def claim_arguments(
    *, batch: int, lease_s: float, per_endpoint: int, in_flight: Mapping[UUID, int]
) -> tuple[object, ...]:
    """The parameters of :data:`CLAIM_SQL`."""
    return (batch, lease_s, per_endpoint, list(in_flight), list(in_flight.values()))


@dataclass(frozen=True)
class _Lease:
    endpoint_id: UUID
    until: datetime


class Dispatcher:
    """Claims due messages and delivers each in a task of its own, so a slow
    or hostile receiver holds up only its own messages (and at most
    ``per_endpoint`` delivery slots), never the claim loop or another
    endpoint. Runs as two tasks under a :class:`Supervisor`: the claim loop
    ("webhook-dispatcher") and the listener that wakes it
    ("webhook-listener")."""

    def __init__(
        self,
        store: EventStore,
        config: DispatcherConfig,
        *,
        on_attempt: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ):
        self._store = store
        self._config = config
        self._on_attempt = on_attempt or (lambda _outcome: None)
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._supervisor: Supervisor | None = None
        self._owns_supervisor = False
        self._held: dict[UUID, _Lease] = {}
        """Messages this dispatcher has claimed and not yet finished, with their lease."""
        self._in_flight: collections.Counter[UUID] = collections.Counter()
        """Of those, how many per endpoint."""

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Run under `supervisor` (the process's own), or under one of its own."""
        self._open_session()
        self._owns_supervisor = supervisor is None
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self._supervisor.spawn(DISPATCHER_TASK, self._run, release=self.release)
        self._supervisor.spawn(LISTENER_TASK, self._listen)

    async def stop(self) -> None:
        """Stop both tasks, give back the leases still held (another process
        can send those messages at once), and close the HTTP session."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            if self._owns_supervisor:
                await supervisor.stop()
            else:
                await supervisor.cancel(DISPATCHER_TASK)
                await supervisor.cancel(LISTENER_TASK)
        try:
            await self.release()
        except Exception as exc:  # their leases run out instead
            log.warning("webhook dispatcher could not give back its leases: %s", exc)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        self._wake.set()

    async def release(self) -> None:
        """Give back the leases of messages claimed and not finished (after a
        failed run its deliveries were cancelled), so they are sent again now
        rather than when their lease runs out."""
        held = list(self._held.items())
        self._held.clear()
        self._in_flight.clear()
        if held:
            ids = [message for message, _ in held]
            leases = [lease.until for _, lease in held]
            await self._store.with_connection(lambda c: c.execute(_RELEASE, ids, leases))

    def _open_session(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(allow_private=self._config.allow_private),
            limit=self._config.max_in_flight,
            limit_per_host=0,  # per endpoint, the dispatcher's own bound applies
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._config.timeout_s),
            auto_decompress=False,  # the body is not used: no decompression bomb
            cookie_jar=aiohttp.DummyCookieJar(),  # one receiver's cookies go nowhere
        )

    async def _run(self) -> None:
        deliveries: set[asyncio.Task[None]] = set()
        try:
            while True:
                if await self._claim_and_deliver(deliveries):
                    continue
                await self._sleep_until_due()
        finally:
            # A failed run's deliveries end with it; their leases stay held
            # until release() gives them back.
            await cancel_and_wait(*deliveries)

    async def _claim_and_deliver(self, deliveries: set[asyncio.Task[None]]) -> int:
        """Claim what may be sent and start a delivery task for each; the
        number claimed. Returns without waiting for any delivery."""
        capacity = min(self._config.batch_size, self._config.max_in_flight - len(self._held))
        if capacity <= 0:
            return 0
        try:
            claimed = await self._claim(capacity)
        except StoreUnavailable as exc:
            log.warning("webhook dispatch paused: %s", exc)
            return 0
        if not claimed:
            return 0
        try:
            targets = await endpoints.delivery_targets(
                self._store,
                list({row["endpoint_id"] for row in claimed}),
                sealer=self._config.sealer,
            )
        except StoreUnavailable as exc:
            log.warning("webhook dispatch paused: %s", exc)
            for row in claimed:  # the database is away: their leases run out
                self._forget(row["id"])
            return 0
        for row in claimed:
            target = targets.get(row["endpoint_id"])
            if target is None:  # its secret does not open (logged): the lease runs out
                self._forget(row["id"])
                continue
            task = asyncio.create_task(self._deliver_and_finish(row, target))
            deliveries.add(task)
            task.add_done_callback(deliveries.discard)
        return len(claimed)

    async def _claim(self, capacity: int) -> list[asyncpg.Record]:
        arguments = claim_arguments(
            batch=capacity,
            lease_s=self._config.lease_s,
            per_endpoint=self._config.per_endpoint,
            in_flight=self._in_flight,
        )
        claimed: list[asyncpg.Record] = await self._store.with_connection(
            lambda c: c.fetch(CLAIM_SQL, *arguments)
        )
        for row in claimed:
            self._held[row["id"]] = _Lease(row["endpoint_id"], row["lease_until"])
            self._in_flight[row["endpoint_id"]] += 1
        return claimed

    def _forget(self, message: UUID) -> None:
        lease = self._held.pop(message, None)
        if lease is not None:
            self._in_flight[lease.endpoint_id] -= 1
            if self._in_flight[lease.endpoint_id] <= 0:
                del self._in_flight[lease.endpoint_id]

    async def _deliver_and_finish(
        self, row: asyncpg.Record, target: endpoints.DeliveryTarget
    ) -> None:
        try:
            await self._deliver(row, target)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Sent perhaps, but not written down: the lease runs out and the
            # message goes again, with the same webhook-id.
            log.exception("webhook message %s: the attempt could not be recorded", row["id"])
        self._forget(row["id"])
        self._wake.set()  # the next message of its relationship may go now

    async def _sleep_until_due(self) -> None:
        timeout = self._config.poll_interval_s
        with contextlib.suppress(StoreUnavailable):
            due = await self._store.with_connection(lambda c: c.fetchval(_NEXT_DUE))
            if due is not None:
                timeout = min(timeout, max(0.0, (due - datetime.now(UTC)).total_seconds()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        self._wake.clear()

    async def _listen(self) -> None:
        """Wake as soon as the outbox announces new messages."""
        channel = webhook_channel(self._store.schema)

        def woken(*_: object) -> None:
            self._wake.set()

        while True:
            try:
                async with self._store.pool.acquire() as conn:
                    lost = asyncio.Event()
                    conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                    await conn.add_listener(channel, woken)
                    self._wake.set()  # anything announced while not listening
                    try:
                        await lost.wait()
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.remove_listener(channel, woken)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("webhook listener reconnecting: %s", exc)
            await asyncio.sleep(1.0)

    async def _deliver(self, row: asyncpg.Record, target: endpoints.DeliveryTarget) -> None:
        """One attempt at one message, written down. Whatever the receiver
        does is an outcome of this message; only the database can fail here."""
        attempted_at = datetime.now(UTC)
        outcome = await self._send(row, target)
        attempt = row["attempts"] + 1
        next_retry = self._next_retry(attempt, outcome)
        async with self._store.transaction() as conn:
            await conn.execute(
                _LOG_ATTEMPT, row["id"], row["endpoint_id"], attempt, attempted_at,
                outcome.status, outcome.latency_ms, outcome.error, next_retry,
            )  # fmt: skip
            if outcome.delivered:
                await conn.execute(_DELIVERED, row["id"], outcome.status)
                await endpoints.mark_healthy(conn, row["endpoint_id"])
            else:
                if next_retry is None:
                    await conn.execute(_FAILED, row["id"], outcome.status, outcome.error)
                else:
                    await conn.execute(_RETRY, row["id"], next_retry, outcome.status, outcome.error)
                if outcome.gone:
                    await endpoints.disable(
                        conn, row["endpoint_id"], "the receiver answered 410 Gone"
                    )
                else:
                    await endpoints.mark_failing(conn, row["endpoint_id"], FAILING_TOO_LONG)
        self._on_attempt("delivered" if outcome.delivered else "failed")

    async def _send(self, row: asyncpg.Record, target: endpoints.DeliveryTarget) -> Outcome:
        """POST the message; never raises (but for cancellation): every
        answer, error and timeout is an :class:`Outcome`."""
        started = time.perf_counter()
        try:
            assert self._session is not None, "the dispatcher is not started"
            body = json.dumps(row["body"], separators=(",", ":")).encode()
            message = wire_id(row["id"])
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/cloudevents+json",
                "webhook-id": message,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature_header(target.secrets, message, timestamp, body),
                "User-Agent": "Mentorflow-Webhooks/1.0",
            }
            if not self._config.allow_private:
                refuse_private_literal(target.url)
            async with self._session.post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                # Enough to let the receiver finish; never the whole body.
                await response.content.read(MAX_RESPONSE_BYTES)
                latency = _ms_since(started)
                retry_after = _retry_after(response.headers.get("Retry-After"))
                error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
                return Outcome(response.status, latency, error, retry_after)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return Outcome(None, _ms_since(started), f"timed out after {self._config.timeout_s}s")
        except Exception as exc:
            return Outcome(None, _ms_since(started), _describe(exc))

    def _next_retry(self, attempt: int, outcome: Outcome) -> datetime | None:
        """When to try again, or None: delivered, gone, or out of attempts."""
        if outcome.delivered or outcome.gone:
            return None
        schedule = self._config.retry_schedule
        if attempt > len(schedule):
            return None
        delay = schedule[attempt - 1] * (1 + self._rng.uniform(-JITTER, JITTER))
        if outcome.retry_after is not None:
            delay = min(max(0.0, outcome.retry_after), MAX_RETRY_AFTER_S)
        return datetime.now(UTC) + timedelta(seconds=delay)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _describe(exc: BaseException) -> str:
    """An error as the delivery log keeps it: short, valid UTF-8 without NUL
    (an exception may quote the receiver's bytes)."""
    text = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


_DELTA_SECONDS = re.compile(r"[0-9]+")


def _retry_after(raw: str | None) -> float | None:
    """Retry-After as seconds in [0, MAX_RETRY_AFTER_S]: a number, or an HTTP
    date; None for anything else (whatever its characters or size)."""
    if raw is None:
        return None
    text = raw.strip()
    if _DELTA_SECONDS.fullmatch(text):
        # Only ASCII digits (int() takes others); long ones are just "a lot".
        return MAX_RETRY_AFTER_S if len(text) > 9 else min(float(text), MAX_RETRY_AFTER_S)
    if not text or len(text) > MAX_HTTP_DATE_CHARS or not text.isascii():
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError, AttributeError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)
