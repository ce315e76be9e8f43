"""Webhook delivery latency and throughput, against a bare POST baseline.

A steady stream of lifecycle events (default 200/s, each `concern.raised` on
one of many relationships) is appended through the repository; the outbox
projection (real runner) and the dispatcher (real, signing every message)
deliver them to a receiver on 127.0.0.1. Latency is from the moment the
append returned (committed) to the moment the receiver got the message.

Baseline, same run: the same receiver sent the same number of signed-size
bodies by one bare aiohttp client at the same rate (no database, no outbox).

Target: commit-to-delivery p99 < 500 ms at 200 events/s.

    python bench/webhooks.py [--rate 200] [--seconds 10]
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
from datetime import UTC, datetime  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from domain import Envelope, Relationship, create_cipher_key  # noqa: E402
from domain.samples import walk_to  # noqa: E402
from service.platform.settings import Settings  # noqa: E402
from service.platform.supervisor import Supervisor  # noqa: E402
from service.projection_runner import ProjectionRunner  # noqa: E402
from service.relationships.codec import mapper_for  # noqa: E402
from service.relationships.repository import RelationshipRepository  # noqa: E402
from service.store.eventstore import EventStore  # noqa: E402
from service.webhooks import endpoints  # noqa: E402
from service.webhooks.dispatcher import Dispatcher, DispatcherConfig  # noqa: E402
from service.webhooks.outbox import WebhookOutbox  # noqa: E402
from service.webhooks.sealing import SecretSealer  # noqa: E402
from tests.support.database import database_url_for_tests, drop_schema  # noqa: E402
from tests.support.receiver import serving  # noqa: E402

RELATIONSHIPS = 50
CONCERN = {"category": "other", "severity": "low"}


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.expected = 0
        self.all_arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = body["data"].get("relationship_id", "") + ":" + str(body["sequence"])
        self.arrivals[key] = time.perf_counter()
        if self.expected and len(self.arrivals) >= self.expected:
            self.all_arrived.set()
        return web.Response(status=204)


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def paced(rate: float, seconds: float, act: object) -> None:
    """Call `act(i)` at a steady rate, without waiting for earlier calls."""
    tasks = []
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(act(i)))  # type: ignore[operator]
    await asyncio.gather(*tasks)


async def mentorflow_run(rate: float, seconds: float) -> tuple[list[float], float]:
    dsn = database_url_for_tests()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = await EventStore.open(dsn, schema)
    receiver = Receiver()
    receiving = serving(receiver.handle)
    url = await receiving.__aenter__()
    repository = RelationshipRepository(store, mapper_for(Settings()))
    runner = ProjectionRunner(
        store, dsn, lambda r: repository.decode(r).event, [WebhookOutbox()], poll_interval=0.5
    )
    sealer = SecretSealer(create_cipher_key())  # secrets sealed at rest, opened per claim
    config = DispatcherConfig(
        retry_schedule=(1, 5, 30), allow_private=True, batch_size=200, sealer=sealer
    )
    dispatcher = Dispatcher(store, config)
    supervisor = Supervisor()  # as in the service: the dispatcher's tasks run under it
    try:
        relationships: list[Relationship] = []
        for _ in range(RELATIONSHIPS):
            relationship = walk_to("cultivation")
            await repository.save(relationship)
            relationships.append(relationship)
        await endpoints.create(store, url, ["relationship.concern.raised"], "bench", sealer=sealer)
        await runner.start()
        await dispatcher.start(supervisor)
        committed: dict[str, float] = {}
        locks = [asyncio.Lock() for _ in relationships]

        async def append(i: int) -> None:
            index = i % len(relationships)
            async with locks[index]:
                relationship = relationships[index]
                relationship.record("concern.raised", CONCERN, _envelope())
                await repository.save(relationship)
                committed[f"{relationship.id}:{relationship.version}"] = time.perf_counter()

        started = time.perf_counter()
        await paced(rate, seconds, append)
        receiver.expected = len(committed)
        if len(receiver.arrivals) >= receiver.expected:
            receiver.all_arrived.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver.all_arrived.wait(), 30)
        elapsed = max(receiver.arrivals.values(), default=started) - started
        latencies = [
            (receiver.arrivals[key] - at) * 1000
            for key, at in committed.items()
            if key in receiver.arrivals
        ]
        missing = len(committed) - len(latencies)
        if missing:
            print(f"  WARNING: {missing} messages not delivered within 30 s")
        return latencies, len(latencies) / elapsed
    finally:
        await dispatcher.stop()
        await supervisor.stop()
        await runner.stop()
        await receiving.__aexit__(None, None, None)
        await store.close()
        await drop_schema(dsn, schema)


async def baseline_run(rate: float, seconds: float) -> tuple[list[float], float]:
    receiver = Receiver()
    latencies: list[float] = []
    async with serving(receiver.handle) as url, aiohttp.ClientSession() as session:

        async def send(i: int) -> None:
            body = {"sequence": i, "data": {"relationship_id": "r"}, "pad": "x" * 400}
            sent = time.perf_counter()
            async with session.post(url, json=body) as response:
                await response.read()
            latencies.append((receiver.arrivals[f"r:{i}"] - sent) * 1000)

        started = time.perf_counter()
        await paced(rate, seconds, send)
        return latencies, len(latencies) / (time.perf_counter() - started)


def _envelope() -> Envelope:
    return Envelope(datetime.now(UTC), None, "bench", None, None)


async def main(rate: float, seconds: float) -> None:
    base, base_rate = await baseline_run(rate, seconds)
    ours, our_rate = await mentorflow_run(rate, seconds)
    b50, b99 = percentiles(base)
    o50, o99 = percentiles(ours)
    print(f"\n{rate:.0f} events/s for {seconds:.0f} s")
    print(f"{'subject':28}{'delivered/s':>12}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"{'bare POST (baseline)':28}{base_rate:>12.0f}{b50:>9.1f}{b99:>9.1f}")
    print(f"{'commit -> webhook delivery':28}{our_rate:>12.0f}{o50:>9.1f}{o99:>9.1f}")
    print(f"p99 vs baseline p99: {o99 / b99:.1f}x; mean {statistics.mean(ours):.1f} ms")
    print("target: commit-to-delivery p99 < 500 ms at 200 events/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds))
