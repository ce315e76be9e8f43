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
import contextlib
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg

from projections.webhook_outbox import webhook_channel, wire_id
from service.store.errors import StoreUnavailable
from service.store.eventstore import EventStore
from service.tasks import cancel_and_wait
from service.webhooks import endpoints
from service.webhooks.sealing import PLAIN, SecretSealer
from service.webhooks.signing import signature_header
from service.webhooks.ssrf import GuardedResolver, UnsafeUrl, refuse_private_literal

log = logging.getLogger(__name__)

FAILING_TOO_LONG = timedelta(days=5)
MAX_RETRY_AFTER_S = 24 * 3600.0
JITTER = 0.2

_CLAIM = """
UPDATE webhook_messages SET lease_until = now() + make_interval(secs => $2)
 WHERE id IN (
    SELECT m.id FROM webhook_messages m
      JOIN webhook_endpoints e ON e.id = m.endpoint_id
     WHERE m.state = 'pending' AND m.next_attempt_at <= now()
       AND (m.lease_until IS NULL OR m.lease_until < now())
       AND e.enabled AND e.deleted_at IS NULL
       AND NOT EXISTS (
           SELECT 1 FROM webhook_messages p
            WHERE p.endpoint_id = m.endpoint_id AND p.relationship_id = m.relationship_id
              AND p.state = 'pending'
              AND (p.position, p.webhook_type) < (m.position, m.webhook_type))
     ORDER BY m.next_attempt_at, m.position
     LIMIT $1
       FOR UPDATE OF m SKIP LOCKED)
RETURNING id, endpoint_id, body, attempts
"""
_NEXT_DUE = "SELECT min(next_attempt_at) FROM webhook_messages WHERE state = 'pending'"
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
    batch_size: int = 50
    lease_s: float = 60.0
    poll_interval_s: float = 1.0
    sealer: SecretSealer = PLAIN
    """Opens the stored secrets (a sealed one without the key fails loudly)."""


class Dispatcher:
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
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(allow_private=self._config.allow_private),
            limit=100,
            limit_per_host=20,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self._config.timeout_s)
        )
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        listener = asyncio.create_task(self._listen())
        try:
            while True:
                try:
                    sent = await self.run_once()
                except StoreUnavailable as exc:
                    log.warning("webhook dispatch paused: %s", exc)
                    sent = 0
                if sent:
                    continue
                await self._sleep_until_due()
        finally:
            await cancel_and_wait(listener)

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

    async def run_once(self) -> int:
        """Claim what is due and deliver it; the number of attempts made."""
        claimed = await self._store.with_connection(
            lambda c: c.fetch(_CLAIM, self._config.batch_size, self._config.lease_s)
        )
        if not claimed:
            return 0
        targets = await endpoints.delivery_targets(
            self._store, list({row["endpoint_id"] for row in claimed}), sealer=self._config.sealer
        )
        await asyncio.gather(
            *(
                self._deliver(row, targets[row["endpoint_id"]])
                for row in claimed
                if row["endpoint_id"] in targets
            )
        )
        return len(claimed)

    async def _deliver(self, row: asyncpg.Record, target: endpoints.DeliveryTarget) -> None:
        attempted_at = datetime.now(UTC)
        outcome = await self._send(row, target)
        attempt = row["attempts"] + 1
        next_retry = self._next_retry(attempt, outcome)
        self._on_attempt("delivered" if outcome.delivered else "failed")
        async with self._store.transaction() as conn:
            await conn.execute(
                _LOG_ATTEMPT, row["id"], row["endpoint_id"], attempt, attempted_at,
                outcome.status, outcome.latency_ms, outcome.error, next_retry,
            )  # fmt: skip
            if outcome.delivered:
                await conn.execute(_DELIVERED, row["id"], outcome.status)
                await endpoints.mark_healthy(conn, row["endpoint_id"])
                return
            if next_retry is None:
                await conn.execute(_FAILED, row["id"], outcome.status, outcome.error)
            else:
                await conn.execute(_RETRY, row["id"], next_retry, outcome.status, outcome.error)
            if outcome.gone:
                await endpoints.disable(conn, row["endpoint_id"], "the receiver answered 410 Gone")
            else:
                await endpoints.mark_failing(conn, row["endpoint_id"], FAILING_TOO_LONG)

    async def _send(self, row: asyncpg.Record, target: endpoints.DeliveryTarget) -> Outcome:
        assert self._session is not None
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
        started = time.perf_counter()
        try:
            if not self._config.allow_private:
                refuse_private_literal(target.url)
            async with self._session.post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.content.read(4096)
                latency = (time.perf_counter() - started) * 1000
                retry_after = _retry_after(response.headers.get("Retry-After"))
                error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
                return Outcome(response.status, latency, error, retry_after)
        except TimeoutError:
            return Outcome(None, _ms_since(started), f"timed out after {self._config.timeout_s}s")
        except (aiohttp.ClientError, OSError, UnsafeUrl) as exc:
            return Outcome(None, _ms_since(started), f"{type(exc).__name__}: {exc}"[:500])

    def _next_retry(self, attempt: int, outcome: Outcome) -> datetime | None:
        """When to try again, or None: delivered, gone, or out of attempts."""
        if outcome.delivered or outcome.gone:
            return None
        schedule = self._config.retry_schedule
        if attempt > len(schedule):
            return None
        delay = schedule[attempt - 1] * (1 + self._rng.uniform(-JITTER, JITTER))
        if outcome.retry_after is not None:
            delay = min(outcome.retry_after, MAX_RETRY_AFTER_S)
        return datetime.now(UTC) + timedelta(seconds=delay)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _retry_after(raw: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not raw:
        return None
    if raw.strip().isdigit():
        return float(raw.strip())
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
