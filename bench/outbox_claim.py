"""The dispatcher's claim query against an outbox that grows.

An outbox keeps every message it ever sent, so most of its rows are
delivered and a few are pending. Claiming must cost what the pending rows
cost, not what the table holds. For each size (default 10k, 100k, 1M rows;
the same pending rows at every size: 2,000 over 20 endpoints and 500
relationships, so 4 per relationship, one in ten waiting for a retry) the
rows are written as the service writes them, pending and then updated to
delivered, and the claim is timed in three states of the table:

- unanalysed: no statistics and not vacuumed (autovacuum is off for the
  bench's table), as a store that has just grown or been restored; the
  partial indexes still hold an entry for every message ever pending;
- analysed: after ``ANALYZE`` (the dead entries are still there);
- vacuumed: after ``VACUUM ANALYZE``, what autovacuum keeps up with.

Each claim runs in a transaction that is rolled back, so every repetition
sees the same rows; the figures are the fastest and the median of 15.
Ratios (of the fastest) are against the smallest size: flat is what we want.
``--legacy`` also measures the claim as it was before migration 0030 (on the
schema as it was: 0020's index, not 0030's); ``--explain`` prints EXPLAIN
ANALYZE at the largest size.

    python bench/outbox_claim.py [--sizes 10000,100000,1000000] [--legacy] [--explain]
    (DATABASE_URL selects a server; default: the embedded PostgreSQL)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/http.py shadows http

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import asyncpg  # noqa: E402

from service.store.eventstore import EventStore  # noqa: E402
from service.webhooks.dispatcher import CLAIM_SQL, claim_arguments  # noqa: E402
from tests.support.database import database_url_for_tests, drop_schema  # noqa: E402

ENDPOINTS = 20
RELATIONSHIPS = 500
REPEATS = 15

LEGACY_CLAIM = """
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
"""The claim as it was before migration 0030 (for comparison); migration 0030
dropped the index it was planned with, so it is measured on 0030's indexes."""
CURRENT_ARGUMENTS = claim_arguments(batch=50, lease_s=60.0, per_endpoint=8, in_flight={})

_FILL = """
INSERT INTO webhook_messages (id, endpoint_id, position, relationship_id, webhook_type, body,
                              next_attempt_at)
SELECT gen_random_uuid(), e.ids[1 + g % $2], g, md5('r' || (g % $3))::uuid,
       'relationship.concern.raised', '{"specversion": "1.0"}'::jsonb,
       CASE WHEN g > $1 - $4 AND g % 10 = 0 THEN now() + interval '1 hour'
            ELSE now() - ($1 - g) * interval '1 ms' END
  FROM generate_series(1, $1) AS g,
       (SELECT array_agg(id ORDER BY id) AS ids FROM webhook_endpoints) AS e
"""
_DELIVER = (
    "UPDATE webhook_messages SET state = 'delivered', attempts = 1, delivered_at = now()"
    " WHERE position <= $1"
)
_AS_BEFORE_0030 = """
DROP INDEX webhook_messages_endpoint_due;
DROP INDEX webhook_messages_head;
CREATE INDEX webhook_messages_order ON webhook_messages (endpoint_id, relationship_id, position)
    WHERE state = 'pending';
"""


async def fill(conn: asyncpg.Connection, rows: int, pending: int) -> None:
    await conn.execute("ALTER TABLE webhook_messages SET (autovacuum_enabled = false)")
    await conn.execute("ALTER TABLE webhook_endpoints SET (autovacuum_enabled = false)")
    for _ in range(ENDPOINTS):
        await conn.execute(
            "INSERT INTO webhook_endpoints (id, url, event_types, secret, created_position)"
            " VALUES ($1, 'https://example.com/hook', '{*}', 'whsec_x', 0)",
            uuid.uuid4(),
        )
    # As the service does: every message is written pending, then delivered.
    await conn.execute(_FILL, rows, ENDPOINTS, RELATIONSHIPS, pending)
    await conn.execute(_DELIVER, rows - pending)


async def time_claim(
    conn: asyncpg.Connection, sql: str, args: tuple[object, ...]
) -> tuple[float, float]:
    """The fastest and the median of REPEATS claims, in ms (the fastest is the
    cost with the least interference from whatever else the machine runs)."""
    timings = []
    claimed = 0
    for _ in range(REPEATS):
        tx = conn.transaction()
        await tx.start()
        started = time.perf_counter()
        claimed = len(await conn.fetch(sql, *args))
        timings.append((time.perf_counter() - started) * 1000)
        await tx.rollback()
    assert claimed > 0, "the claim found nothing to claim"
    return min(timings), statistics.median(timings)


async def explain(conn: asyncpg.Connection, sql: str, args: tuple[object, ...]) -> str:
    tx = conn.transaction()
    await tx.start()
    try:
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, *args)
    finally:
        await tx.rollback()
    return "\n".join(r[0] for r in rows)


SUBJECTS = {
    "legacy": (LEGACY_CLAIM, (50, 60.0)),
    "current": (CLAIM_SQL, CURRENT_ARGUMENTS),
}
STATES = ("unanalysed", "analysed", "vacuumed")


async def measure(
    dsn: str, rows: int, pending: int, subject: str, show_plan: bool
) -> dict[str, tuple[float, float]]:
    sql, args = SUBJECTS[subject]
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = await EventStore.open(dsn, schema, pool_size=2)
    figures: dict[str, tuple[float, float]] = {}
    try:
        async with store.pool.acquire() as conn:
            if subject == "legacy":
                await conn.execute(_AS_BEFORE_0030)
            await fill(conn, rows, pending)
        for state in STATES:
            # A session of its own for each state, as a dispatcher's would be:
            # the one that wrote a million rows times its queries differently.
            conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
            try:
                if state == "analysed":
                    await conn.execute("ANALYZE webhook_messages; ANALYZE webhook_endpoints")
                elif state == "vacuumed":
                    await conn.execute("VACUUM ANALYZE webhook_messages")
                # Write out what the fill and vacuum dirtied now, not while timing.
                with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("CHECKPOINT")
                figures[state] = await time_claim(conn, sql, args)
                if show_plan:
                    print(f"\n--- {subject}, {state}, {rows:,} rows ---")
                    print(await explain(conn, sql, args))
            finally:
                await conn.close()
    finally:
        await store.close()
        await drop_schema(dsn, schema)
    return figures


async def main(sizes: list[int], pending: int, legacy: bool, show_plan: bool) -> None:
    dsn = database_url_for_tests()
    subjects = ["legacy", "current"] if legacy else ["current"]
    results = {
        (subject, size): await measure(dsn, size, pending, subject, show_plan and size == sizes[-1])
        for subject in subjects
        for size in sizes
    }
    print(f"\nclaim of up to 50 messages; {pending:,} pending rows at every size")
    print(
        f"{'query':8} {'rows':>10}  {'state':11} {'fastest ms':>11} {'vs smallest':>12}"
        f" {'median ms':>10}"
    )
    for subject in subjects:
        for size in sizes:
            for state, (fastest, median) in results[(subject, size)].items():
                ratio = fastest / results[(subject, sizes[0])][state][0]
                print(
                    f"{subject:8} {size:>10,}  {state:11} {fastest:>11.2f} {ratio:>11.1f}x"
                    f" {median:>10.2f}"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--pending", type=int, default=2000)
    parser.add_argument("--legacy", action="store_true")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    asyncio.run(main(sizes, args.pending, args.legacy, args.explain))
