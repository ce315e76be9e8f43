"""One evaluation pass of the at-risk rules over many relationships, against a
baseline measured in the same run.

The relationship summaries table is filled with synthetic rows (default
100,000: every phase, the four cadences, meetings spread over the last four
months, some paused, some with action items past due, some with an open
high-severity concern, some flagged before), as the summaries projection would
have written them. Then:

- pass: the risk worker's evaluation (projections/risk_queries.py) an hour
  after a pass whose changes were recorded (the steady state): one indexed
  query per rule, one over the relationships flagged before, one load of the
  rows whose reasons changed, the domain's pure rules on them; nothing is
  recorded;
- pass on news: the same, as the worker runs it between complete passes
  when events arrive: of the relationships flagged before it looks only at
  those whose row changed since the previous pass (here the last
  ``--changed`` rows by position, as half a second of a busy log would
  change);
- baseline: what a pass without the indexed queries would do: read every
  row (one query) and evaluate every relationship with the same rules.

The pass and the pass on news are then timed again after a ``VACUUM`` of the
table. Before it, the partial indexes still hold an entry for each row
version that the settling update left behind (the rows as they were before
they were flagged), and every query visits those in the heap to find them
dead: what a store meets until autovacuum has run (never, on a server with
autovacuum off). After it, they read only live entries.

It prints the median of ``--rounds`` of each, their ratio (pass / baseline:
below 1 is faster), and each rule's query plan (no sequential scan).

    python bench/risk.py [--relationships 100000] [--rounds 5] [--changed 500]
    (DATABASE_URL selects a server; default: the embedded PostgreSQL)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domain.risk import DEFAULT_POLICY, change, evaluate
from projections.risk_queries import evaluation_pass, rule_queries
from projections.summaries_fold import Summary
from projections.summaries_queries import COLUMNS, TABLE, _from_row, upsert_rows
from service.store.eventstore import EventStore
from tests.support.database import database_url_for_tests, drop_schema, new_schema_name

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
PHASES = ["reflection", "identification", "establishment", "cultivation", "refinement", "concluded"]
WEIGHTS = [5, 8, 7, 60, 5, 15]
CADENCES = ["weekly", "biweekly", "monthly", "quarterly"]


def synthetic(index: int, rng: random.Random) -> Summary:
    phase = rng.choices(PHASES, WEIGHTS)[0]
    opened = NOW - timedelta(days=rng.uniform(30, 400))
    entered = NOW - timedelta(days=rng.uniform(0, 90))
    clock = NOW - timedelta(days=rng.uniform(0, 120))
    paused = phase in ("establishment", "cultivation") and rng.random() < 0.05
    items: dict[str, str | None] = {}
    positions: dict[str, int] = {}
    if phase in ("cultivation", "refinement") and rng.random() < 0.3:
        due = (NOW + timedelta(days=rng.uniform(-20, 40))).date()
        items, positions = {"a1": due.isoformat()}, {"a1": index * 10 + 5}
    concerns = {}
    if phase != "concluded" and rng.random() < 0.02:
        concerns = {
            "concern-1": {
                "severity": "high",
                "raised_at": (NOW - timedelta(days=3)).isoformat(),
                "position": index * 10 + 6,
            }
        }
    dues = [v for v in items.values() if v is not None]
    return Summary(
        relationship_id=uuid.UUID(int=index + 1),
        opened_position=index * 10 + 1,
        version=10,
        last_position=index * 10 + 9,
        mentee_id=f"mentee-{index}",
        mentee_name=None,
        program_id=f"program-{index % 50}",
        predecessor_id=None,
        mentor_id=f"mentor-{index % 5000}",
        phase=phase,
        paused=paused,
        paused_since=clock if paused else None,
        resumed_at=None,
        opened_at=opened,
        phase_entered_at=entered,
        last_event_at=entered,
        established_at=entered if phase == "cultivation" else None,
        cadence=rng.choice(CADENCES) if phase in ("cultivation", "refinement") else None,
        last_meeting_at=clock,
        meetings_held=3,
        meetings_since_established=rng.choice([0, 1, 2, 3]),
        open_action_items=items,
        earliest_open_due=datetime.fromisoformat(dues[0]).date() if dues else None,
        concerns=len(concerns),
        open_high_concerns=len(concerns),
        outcome="goals_achieved" if phase == "concluded" else None,
        phase_entered_position=index * 10 + 2,
        meeting_clock_at=clock if phase == "cultivation" else None,
        meeting_clock_position=index * 10 + 3,
        action_item_positions=positions,
        open_concerns=concerns,
        paused_position=index * 10 + 4 if paused else None,
        expected_resume=None,
        risk_codes=[],
    )


async def fill(store: EventStore, count: int) -> None:
    rng = random.Random(7)
    for start in range(0, count, 5000):
        rows = [synthetic(i, rng) for i in range(start, min(count, start + 5000))]
        async with store.pool.acquire() as conn:
            await upsert_rows(conn, rows)
    await store.with_connection(lambda conn: conn.execute(f"ANALYZE {TABLE}"))


_SETTLE = (
    f"UPDATE {TABLE} s SET risk_codes = string_to_array(u.codes, ',')"  # noqa: S608 - constants
    " FROM unnest($1::uuid[], $2::text[]) AS u(id, codes) WHERE s.relationship_id = u.id"
)


async def settle(store: EventStore, at: datetime) -> int:
    """As if the worker had run at ``at`` and its events had been projected:
    every relationship's recorded codes are the reasons true then."""
    changes = await store.with_connection(lambda c: evaluation_pass(c, at, DEFAULT_POLICY))
    ids = [e.relationship_id for e in changes]
    codes = [",".join(e.change.codes) for e in changes]
    await store.with_connection(lambda c: c.execute(_SETTLE, ids, codes))
    await store.with_connection(lambda conn: conn.execute(f"ANALYZE {TABLE}"))
    return len(changes)


async def one_pass(store: EventStore, changed_after: int | None = None) -> tuple[float, int]:
    started = time.perf_counter()
    changes = await store.with_connection(
        lambda c: evaluation_pass(c, NOW, DEFAULT_POLICY, changed_after=changed_after)
    )
    return time.perf_counter() - started, len(changes)


_ALL = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"  # noqa: S608 - constants


async def one_scan(store: EventStore) -> tuple[float, int]:
    """Every relationship read and evaluated (no indexed selection)."""
    started = time.perf_counter()
    rows = await store.with_connection(lambda c: c.fetch(_ALL))
    changed = 0
    for record in rows:
        row = _from_row(record)
        if row.phase == "concluded":
            continue
        if change(row.risk_codes, evaluate(row.risk_facts(), NOW, DEFAULT_POLICY)) is not None:
            changed += 1
    return time.perf_counter() - started, changed


async def plans(store: EventStore, changed_after: int | None = None) -> dict[str, str]:
    out = {}
    for code, (sql, args) in rule_queries(NOW, DEFAULT_POLICY, changed_after).items():
        async with store.pool.acquire() as conn:
            plan = await conn.fetch("EXPLAIN " + sql, *args)
        lines = [row[0] for row in plan]
        scans = [
            line.replace("->", "").strip().split("  ")[0]
            for line in lines
            if "Scan" in line and "Function Scan" not in line
        ]
        out[code] = "; ".join(scans)
    return out


async def main(count: int, rounds: int, changed: int) -> None:
    dsn = database_url_for_tests()
    schema = new_schema_name("bench_risk")
    store = await EventStore.open(dsn, schema)
    try:
        started = time.perf_counter()
        await fill(store, count)
        print(f"{count:,} relationship summaries written in {time.perf_counter() - started:.1f}s")
        flagged = await settle(store, NOW - timedelta(hours=1))
        print(f"{flagged:,} flagged by a pass an hour before (recorded codes set accordingly)")
        await one_pass(store)  # warm up
        await one_scan(store)
        since = (count - changed) * 10  # synthetic rows' last_position is index * 10 + 9
        passes, news, scans = [], [], []
        for _ in range(rounds):
            elapsed, changes = await one_pass(store)
            passes.append(elapsed)
            news.append((await one_pass(store, since))[0])
            scanned, found = await one_scan(store)
            scans.append(scanned)
            assert changes == found, (changes, found)  # same decisions either way
        p, n, b = statistics.median(passes), statistics.median(news), statistics.median(scans)
        print(f"evaluation pass (indexed, one query per rule): {p * 1000:.0f} ms median")
        print(
            f"pass on news ({changed:,} rows changed since the last pass): {n * 1000:.1f} ms"
            f" median, {n / p:.3f} of a complete pass"
        )
        print(f"baseline (read and evaluate every relationship): {b * 1000:.0f} ms median")
        print(f"ratio pass / baseline: {p / b:.3f} ({b / p:.1f}x faster); {changes:,} changes")
        await store.with_connection(lambda conn: conn.execute(f"VACUUM {TABLE}"))
        vacuumed = [(await one_pass(store))[0] for _ in range(rounds)]
        vacuumed_news = [(await one_pass(store, since))[0] for _ in range(rounds)]
        print(
            f"after VACUUM: pass {statistics.median(vacuumed) * 1000:.0f} ms median, pass on"
            f" news {statistics.median(vacuumed_news) * 1000:.1f} ms median"
        )
        for code, plan in (await plans(store)).items():
            print(f"  {code}: {plan}")
        print(f"  flagged, on news: {(await plans(store, since))['flagged']}")
    finally:
        await store.close()
        await drop_schema(dsn, schema)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relationships", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--changed", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.relationships, args.rounds, args.changed))
