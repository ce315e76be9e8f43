"""How every cost grows with the size of the store, in one run.

Builds a store of ``--relationships`` relationships and ``--events`` events
(default 100,000 and 2,000,000) through the store's own append path (the
repository, 16 saves at a time), with a real `mentorflow serve` process (its
workers in process) following it, and at 10%, 50% and 100% of it measures:

- single-event append latency (the store, p50/p99) and throughput at 16 writers;
- ``POST`` of an event over HTTP (p50/p99);
- the relationship list with each filter (phase, program, mentor, at-risk);
- loading a relationship at a random version; a timeline page; a global feed
  page; an inclusion proof; one pass of the at-risk rules; ``verify --all`` events/s;
- bytes per event on disk (events, their indexes, the Merkle tree, read models)
  and the server's resident memory.

The per-request figures are taken in rounds, one call of each per round, so
that a pause of the machine weighs on all of them alike. Every request figure
is also shown as a ratio to ``GET /healthz`` measured in the same rounds (the
machine's noise cancels), and each figure's growth from 10% to 100% is
printed: the target is no per-request figure growing more than 1.5x.

    python bench/scale.py [--relationships 100000] [--events 2000000] [--samples 400]
                          [--no-verify] [--no-risk] [--keep]
    (DATABASE_URL selects a server; default: the embedded PostgreSQL)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # bench/ holds an http.py: keep it off the path

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402
from uuid import UUID  # noqa: E402

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402

from domain import Relationship  # noqa: E402
from domain.samples import START, Clock, cultivate, walk_to  # noqa: E402
from service.composition.components import build  # noqa: E402
from service.platform.settings import Settings  # noqa: E402
from service.relationships.repository import RelationshipRepository  # noqa: E402
from service.risk.worker import RiskWorker  # noqa: E402
from service.store.eventstore import EventStore  # noqa: E402
from tests.support.database import database_url_for_tests, drop_schema, new_schema_name  # noqa: E402
from tests.support.server import ADMIN_TOKEN, ServerProcess  # noqa: E402
from workflows import PHASES, Phase  # noqa: E402

STAGES = (10, 50, 100)
_CULTIVATION: Phase = "cultivation"
MIX: tuple[Phase, ...] = (_CULTIVATION,) * 5 + tuple(p for p in PHASES if p != _CULTIVATION)
"""Half the relationships in cultivation (the long histories), one in ten in each other phase."""
RELATIONSHIPS_PER_MENTOR = 500
"""Mentors too: each has a full first page (50) from the 10% stage on. With a
fixed 20,000 mentors a mentor had 0.5 relationships at 10% and 5 at 100%, and
the list by mentor grew 1.5x by returning more, not by costing more."""
RELATIONSHIPS_PER_PROGRAM = 1_000
"""Programs are sized so that a program's first page is full from the 10% stage
on: a page that only fills up later would look like a cost that grows."""
GROWTH_LIMIT = 1.5
Sample = Callable[[], Awaitable[Any]]


@dataclass
class Store:
    """The store being built, and what the bench knows of it."""

    repository: RelationshipRepository
    events_per_relationship: float
    programs: int = 1
    mentors: int = 1
    built: int = 0
    versions: dict[UUID, int] = field(default_factory=dict)
    cultivating: list[UUID] = field(default_factory=list)

    def cultivation_length(self) -> int:
        others = sum(walk_to(phase).version for phase in MIX if phase != "cultivation")
        in_cultivation = MIX.count("cultivation")
        return max(11, round((len(MIX) * self.events_per_relationship - others) / in_cultivation))

    def make(self, index: int, cultivation_length: int) -> Relationship:
        phase: Phase = MIX[index % len(MIX)]
        clock = Clock(start=START + timedelta(minutes=index), step=timedelta(hours=3))
        relationship = walk_to(
            phase,
            mentee_id=f"mentee-{index}",
            mentor_id=f"mentor-{index % self.mentors}",
            program_id=f"program-{index % self.programs}",
            clock=clock,
        )
        if phase == "cultivation":
            cultivate(relationship, cultivation_length, clock)
        return relationship

    async def grow_to(self, count: int) -> float:
        """Build relationships up to ``count``; events/s of the appends alone."""
        length, appending = self.cultivation_length(), 0.0
        events = 0
        while self.built < count:
            batch = [self.make(i, length) for i in range(self.built, min(count, self.built + 64))]
            started = time.perf_counter()
            for start in range(0, len(batch), 16):
                await asyncio.gather(*(self.repository.save(r) for r in batch[start : start + 16]))
            appending += time.perf_counter() - started
            for relationship in batch:
                self.versions[relationship.id] = relationship.version
                if relationship.phase == "cultivation":
                    self.cultivating.append(relationship.id)
                events += relationship.version
            self.built += len(batch)
        return events / appending if appending else 0.0


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def interleaved(samples: dict[str, Sample], times: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 in ms of each figure's ``times`` calls, taken in rounds of
    one call of each. Measured one figure after the other, a slow spell of the
    machine fell on whichever figure was being measured then, and ``/healthz``,
    measured first, could not show it: growth over ``/healthz`` meant nothing
    for the figures measured later. In rounds, every figure meets the same
    spells as ``/healthz`` does. A sample that returns a number has timed its
    own part (seconds); otherwise the whole call is timed."""
    spent: dict[str, list[float]] = {name: [] for name in samples}
    for _ in range(times):
        for name, sample in samples.items():
            started = time.perf_counter()
            own = await sample()
            took = time.perf_counter() - started
            spent[name].append(own if isinstance(own, float) else took)
    return {name: percentiles(seconds) for name, seconds in spent.items()}


class Http:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base
        self.headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.base + path, headers=self.headers) as response:
            return response.status, await response.json(content_type=None)

    async def ok(self, path: str) -> Any:
        status, body = await self.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body

    async def post(self, path: str, body: Any) -> Any:
        async with self.session.post(self.base + path, json=body, headers=self.headers) as r:
            answer = await r.json(content_type=None)
            if r.status != 201:
                raise RuntimeError(f"POST {path}: {r.status} {answer}")
            return answer


async def caught_up(conn: asyncpg.Connection, timeout: float = 1800) -> float:
    """Wait until every projection (and the tree, where built) has reached the
    log's end; seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        last = await conn.fetchval("SELECT last_position FROM event_position")
        behind = await conn.fetchval("SELECT count(*) FROM tracking WHERE position < $1", last)
        tree = await conn.fetchval("SELECT to_regclass('merkle_tree') IS NOT NULL")
        if tree:
            behind += await conn.fetchval("SELECT count(*) FROM merkle_tree WHERE size < $1", last)
        if not behind:
            return time.perf_counter() - started
        await asyncio.sleep(0.5)
    raise RuntimeError("the workers did not catch up")


async def on_disk(conn: asyncpg.Connection) -> dict[str, int]:
    """Bytes by kind: the events table, its indexes, the Merkle tree, read models."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_table_size(c.oid) AS data, pg_indexes_size(c.oid) AS idx"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
    )
    sizes = {"events": 0, "event indexes": 0, "merkle tree": 0, "read models": 0, "other": 0}
    for row in rows:
        name = row["relname"]
        if name == "events":
            sizes["events"] += row["data"]
            sizes["event indexes"] += row["idx"]
        elif name.startswith("merkle"):
            sizes["merkle tree"] += row["data"] + row["idx"]
        elif name in ("relationship_summaries", "timeline_entries") or name.startswith("phase_"):
            sizes["read models"] += row["data"] + row["idx"]
        else:
            sizes["other"] += row["data"] + row["idx"]
    return sizes


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def measure(
    store: Store,
    http: Http,
    conn: asyncpg.Connection,
    server: ServerProcess,
    args: Any,
    risk: RiskWorker | None = None,
) -> dict[str, float]:
    rng = random.Random(7)
    n = args.samples
    ids = list(store.versions)
    figures: dict[str, float] = {}

    def record(name: str, p50_p99: tuple[float, float]) -> None:
        figures[f"{name} p50 ms"], figures[f"{name} p99 ms"] = p50_p99

    last = await conn.fetchval("SELECT last_position FROM event_position")

    async def post() -> None:
        rid = rng.choice(store.cultivating)
        version = store.versions[rid] + 1
        held = f"2026-0{1 + version % 9}-1{version % 10}T10:00:00Z"
        await http.post(
            f"/v1/relationships/{rid}/events",
            {"type": "meeting.held", "actor": {"id": "mentee", "role": "mentee"},
             "data": {"held_at": held, "duration_minutes": 30}},
        )  # fmt: skip
        store.versions[rid] = version

    def random_version() -> Awaitable[Any]:
        rid = rng.choice(ids)
        return http.ok(f"/v1/relationships/{rid}?version={rng.randint(1, store.versions[rid])}")

    samples: dict[str, Sample] = {
        "GET /healthz (baseline)": lambda: http.ok("/healthz"),
        "append, 1 event (store)": lambda: _append_one(store, rng),
        "POST event (HTTP)": post,
    }
    filters: dict[str, Callable[[], str]] = {
        "phase": lambda: "phase=cultivation",
        "program": lambda: f"program_id=program-{rng.randrange(store.programs)}",
        "mentor": lambda: f"mentor_id=mentor-{rng.randrange(store.mentors)}",
        "at-risk": lambda: "at_risk=true",
    }
    for name, query in filters.items():

        def listing(q: Callable[[], str] = query) -> Awaitable[Any]:
            return http.ok(f"/v1/relationships?{q()}")

        samples[f"list by {name}"] = listing
    samples["load at a random version"] = random_version
    samples["timeline page"] = lambda: http.ok(f"/v1/relationships/{rng.choice(ids)}/timeline")
    samples["global feed page"] = lambda: http.ok(f"/v1/events?after={rng.randrange(last)}")
    status, _ = await http.get(f"/v1/proofs/inclusion?position=1&tree_size={last}")
    if status == 200:
        proof = "/v1/proofs/inclusion?position={}&tree_size=" + str(last)
        samples["inclusion proof"] = lambda: http.ok(proof.format(rng.randint(1, last)))
    for name, p50_p99 in (await interleaved(samples, n)).items():
        record(name, p50_p99)
    figures["append, 16 writers (events/s)"] = await _append_throughput(store)
    last = await conn.fetchval("SELECT last_position FROM event_position")
    if risk is not None:
        # The first pass after growing records what changed meanwhile; the second
        # is the steady cost of the pass that runs every MENTORFLOW_RISK_INTERVAL.
        started = time.perf_counter()
        first = await risk.evaluate_once()
        figures["risk pass, after growth (ms)"] = (time.perf_counter() - started) * 1000
        figures["risk changes recorded"] = len(first.recorded)
        await caught_up(conn)  # the summaries hold what the first pass recorded
        started = time.perf_counter()
        await risk.evaluate_once()
        figures["risk pass, steady (ms)"] = (time.perf_counter() - started) * 1000
        last = await conn.fetchval("SELECT last_position FROM event_position")
        # What runs on news under load: only the flagged relationships whose
        # summary changed since the previous pass (here: in the last 500 events).
        started = time.perf_counter()
        await risk.evaluate_once(changed_after=max(0, last - 500))
        figures["risk pass on news (ms)"] = (time.perf_counter() - started) * 1000
    if args.verify:
        figures["verify --all (events/s)"] = _verify_all(server, last)
    for kind, size in (await on_disk(conn)).items():
        figures[f"bytes/event: {kind}"] = size / last
    figures["server resident memory (MiB)"] = resident_kib(server.process.pid) / 1024  # type: ignore[union-attr]
    figures["events in the store"] = last
    return figures


async def _append_one(store: Store, rng: random.Random) -> float:
    """One single-event append through the store to an existing relationship;
    seconds of the append alone (the load and the decision are not timed)."""
    repository = store.repository
    rid = rng.choice(store.cultivating)
    relationship = await repository.load(rid)
    assert relationship is not None
    relationship.record(
        "meeting.missed",
        {"scheduled_for": "2026-01-05T10:00:00Z", "reason_code": "conflict"},
        Clock().envelope(),
    )
    events = [repository.to_new_event(e) for e in relationship.collect_events()]  # type: ignore[arg-type]
    started = time.perf_counter()
    await repository.store.append(events)
    took = time.perf_counter() - started
    store.versions[rid] = relationship.version
    return took


async def _append_throughput(store: Store, seconds: float = 2.0, writers: int = 16) -> float:
    """Events/s of 16 writers, each opening new relationships (prepared beforehand)."""
    repository = store.repository
    prepared = [
        [
            repository.to_new_event(e)  # type: ignore[arg-type]
            for e in Relationship.open(
                {"mentee_id": f"burst-{w}-{i}"}, Clock().envelope()
            ).collect_events()
        ]
        for w in range(writers)
        for i in range(1500)
    ]
    queues = [prepared[w::writers] for w in range(writers)]
    deadline, done = time.perf_counter() + seconds, [0] * writers

    async def writer(w: int) -> None:
        while time.perf_counter() < deadline and done[w] < len(queues[w]):
            await repository.store.append(queues[w][done[w]])
            done[w] += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return sum(done) / (time.perf_counter() - started)


def _verify_all(server: ServerProcess, events: int) -> float:
    env = {**os.environ, "DATABASE_URL": server.dsn, "MENTORFLOW_DB_SCHEMA": server.schema}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "verify", "--all"],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"verify --all failed: {result.stdout[-500:]} {result.stderr[-500:]}")
    return events / (time.perf_counter() - started)


def report(stages: dict[int, dict[str, float]]) -> None:
    names = list(stages[STAGES[-1]])
    print(
        f"\n{'figure':42} " + " ".join(f"{s:>10}%" for s in STAGES)
        + "   growth  (÷ /healthz)  at 100% ÷ /healthz"
    )  # fmt: skip
    base = {s: stages[s]["GET /healthz (baseline) p50 ms"] for s in STAGES}
    for name in names:
        values = [stages[s].get(name) for s in STAGES]
        cells = " ".join(f"{v:>11.2f}" if v is not None else f"{'n/a':>11}" for v in values)
        first, last = values[0], values[-1]
        growth = last / first if first and last else float("nan")
        relative = ""
        if name.endswith("p50 ms") and first and last and "baseline" not in name:
            # the same growth with the machine's noise taken out: each stage over its /healthz
            normalised = (last / base[STAGES[-1]]) / (first / base[STAGES[0]])
            relative = f"  ({normalised:5.2f})  {last / base[STAGES[-1]]:8.1f}x"
        flag = ""
        if name.endswith(" ms") and "baseline" not in name and growth > GROWTH_LIMIT:
            flag = "  GROWS"
        print(f"{name:42} {cells}   {growth:5.2f}{relative}{flag}")


async def main(args: Any) -> None:
    dsn = database_url_for_tests()
    schema = new_schema_name("scale")
    server = ServerProcess(dsn, schema)
    server.start(timeout=120)
    print(f"server on {server.url}, schema {schema}; log {server._log_path}")
    store = await EventStore.open(dsn, schema, pool_size=20, run_migrations=False)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    settings = Settings.from_env()
    components = build(settings, store, dsn)
    building = Store(
        components.repository,
        args.events / args.relationships,
        programs=max(1, args.relationships // RELATIONSHIPS_PER_PROGRAM),
        mentors=max(1, args.relationships // RELATIONSHIPS_PER_MENTOR),
    )
    stages: dict[int, dict[str, float]] = {}
    started = time.perf_counter()
    try:
        async with aiohttp.ClientSession() as session:
            http = Http(session, server.url)
            for stage in STAGES:
                rate = await building.grow_to(args.relationships * stage // 100)
                waited = await caught_up(conn)
                print(
                    f"{stage}%: {building.built} relationships; appends {rate:,.0f} ev/s;"
                    f" workers caught up {waited:.0f}s later"
                    f" ({time.perf_counter() - started:.0f}s in all)",
                    flush=True,
                )
                risk = components.risk if args.risk else None
                measuring = time.perf_counter()
                stages[stage] = await measure(building, http, conn, server, args, risk)
                for name, value in stages[stage].items():  # now, so a run cut short keeps them
                    print(f"  {stage}% {name}: {value:.2f}", flush=True)
                print(f"  {stage}% measured in {time.perf_counter() - measuring:.0f}s", flush=True)
        report(stages)
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
    finally:
        await conn.close()
        await store.close()
        server.close()
        if not args.keep:
            await drop_schema(dsn, schema)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relationships", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--no-verify", dest="verify", action="store_false")
    parser.add_argument(
        "--no-risk", dest="risk", action="store_false", help="skip the risk evaluation passes"
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    asyncio.run(main(parser.parse_args()))
