"""No receiver can stop webhook delivery.

Whatever a receiver answers (any status, header bytes in any encoding, any
Retry-After, bodies of any size, hanging, resetting the connection,
redirecting) is an outcome of that one message; one endpoint never delays
another; and a failure of the dispatcher's own work is logged, counted, and
delivery comes back under the supervisor.

Receivers are real: an aiohttp server for the well-behaved one, and a raw TCP
server on 127.0.0.1 for the hostile ones, which write bytes no HTTP library
would.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import standardwebhooks
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain.samples import walk_to
from service.platform.settings import Settings
from service.platform.supervisor import Supervisor
from service.projection_runner import ProjectionRunner
from service.relationships.codec import mapper_for
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from service.webhooks import endpoints
from service.webhooks.dispatcher import (
    DISPATCHER_TASK,
    MAX_RETRY_AFTER_S,
    Dispatcher,
    DispatcherConfig,
    _retry_after,
)
from service.webhooks.outbox import WebhookOutbox
from service.webhooks.sealing import PLAIN
from tests.support.receiver import raw_serving, read_request, reset, serving

pytestmark = pytest.mark.db

FAST = (0.05, 0.05, 0.05, 0.05)
RELATIONSHIPS = 4
PER_RELATIONSHIP = walk_to("cultivation").version + 3  # every event + 3 phase changes


@dataclass
class GoodReceiver:
    """Answers 200 at once, and checks every signature."""

    secret: str = ""
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    everything: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        standardwebhooks.Webhook(self.secret).verify(body, dict(request.headers))
        event = await request.json()
        self.received.append(
            {
                "id": request.headers["webhook-id"],
                "subject": event["subject"],
                "key": (event["sequence"], event["type"]),
            }
        )
        if self.expected and len(self.received) >= self.expected:
            self.everything.set()
        return web.Response(status=200)


ODD_RETRY_AFTER = (
    "²".encode(),  # a Unicode digit: str.isdigit() says yes, float() says no
    "١٢".encode(),  # Arabic-Indic digits
    b"9" * 5000,  # more digits than int() converts
    b"-1",
    b"1e9",
    b"nan",
    b"Fri, 31 Dec 9999 23:59:59 GMT",
    b"Mon, 01 Jan 0001 00:00:00 GMT",
    b"Tue, 32 Foo 2026 99:99:99 +9999",
    "mañana".encode("latin-1"),
    b"\xff\xfe\x00\x01",
)


@dataclass
class HostileReceiver:
    """Answers each request in a way picked at random: odd statuses and
    headers, huge or endless bodies, resets, redirects, garbage, or hanging
    until `release` is set. Its first request always hangs; the next ones
    answer with each of ODD_RETRY_AFTER in turn (if that kind is in `kinds`)."""

    rng: random.Random
    redirect_to: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requests: int = 0
    hanging: int = 0
    answers: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    kinds: tuple[str, ...] = (
        "hang", "status", "huge", "endless", "reset", "redirect", "garbage", "retry_after",
    )  # fmt: skip

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        self.requests += 1
        if self.requests == 1:
            kind = "hang"
        elif "retry_after" in self.kinds and self.requests <= 1 + len(ODD_RETRY_AFTER):
            # each odd Retry-After once
            kind = "retry_after"
        else:
            kind = self.rng.choice(self.kinds)
        self.answers[kind] += 1
        await getattr(self, f"_{kind}")(writer)

    async def _hang(self, writer: asyncio.StreamWriter) -> None:
        self.hanging += 1
        try:
            await self.release.wait()
        finally:
            self.hanging -= 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async def _status(self, writer: asyncio.StreamWriter) -> None:
        status = self.rng.choice([200, 204, 301, 400, 404, 408, 429, 500, 502, 503, 599, 999])
        junk = bytes(self.rng.randrange(128, 256) for _ in range(20))
        writer.write(
            b"HTTP/1.1 %d Whatever\r\nX-Junk: %s\r\nContent-Length: 0\r\n\r\n" % (status, junk)
        )
        await writer.drain()

    async def _huge(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 1000000000\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(2000):  # 128 MiB, unless the client stops reading first
            writer.write(chunk)
            await writer.drain()

    async def _endless(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"10000\r\n" + b"y" * 65536 + b"\r\n")
            await writer.drain()

    async def _reset(self, writer: asyncio.StreamWriter) -> None:
        reset(writer)

    async def _redirect(self, writer: asyncio.StreamWriter) -> None:
        status = self.rng.choice([301, 302, 307, 308])
        location = self.redirect_to.encode()
        head = b"HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
        writer.write(head % (status, location))
        await writer.drain()

    async def _garbage(self, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 200))))
        await writer.drain()

    async def _retry_after(self, writer: asyncio.StreamWriter) -> None:
        status = self.rng.choice([429, 503, 200, 301])
        odd = self.answers["retry_after"] - 1
        if odd < len(ODD_RETRY_AFTER):
            value = ODD_RETRY_AFTER[odd]
        else:
            value = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 40)))
            value = value.replace(b"\r", b"").replace(b"\n", b"")
        head = b"HTTP/1.1 %d No\r\nRetry-After: %s\r\nContent-Length: 2\r\n\r\nno"
        writer.write(head % (status, value))
        await writer.drain()


@asynccontextmanager
async def outbox_runner(store: EventStore, dsn: str) -> AsyncIterator[RelationshipRepository]:
    repository = RelationshipRepository(store, mapper_for(Settings()))
    runner = ProjectionRunner(
        store, dsn, lambda r: repository.decode(r).event, [WebhookOutbox()], poll_interval=0.1
    )
    await runner.start()
    try:
        yield repository
    finally:
        await runner.stop()


@asynccontextmanager
async def dispatching(
    store: EventStore, config: DispatcherConfig, supervisor: Supervisor
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(store, config)
    await dispatcher.start(supervisor)
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()
        await supervisor.stop()


async def _eventually(event: asyncio.Event, what: Callable[[], str], timeout: float = 60) -> None:
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        raise AssertionError(f"timed out: {what()}") from None


async def _until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def _until_settled(store: EventStore, description: str, timeout: float = 60) -> None:
    """Until none of the endpoint's messages is in flight or due: each is
    delivered, failed for good, waiting for a retry the receiver put off
    (Retry-After may say a day), or behind one that waits."""
    sql = """
        SELECT count(*) FILTER (WHERE h.lease_until > now() OR h.next_attempt_at <= now()),
               (SELECT count(*) FROM webhook_messages m JOIN webhook_endpoints e
                    ON e.id = m.endpoint_id WHERE e.description = $1)
          FROM (SELECT DISTINCT ON (m.relationship_id) m.lease_until, m.next_attempt_at
                  FROM webhook_messages m JOIN webhook_endpoints e ON e.id = m.endpoint_id
                 WHERE e.description = $1 AND m.state = 'pending'
                 ORDER BY m.relationship_id, m.position, m.webhook_type) AS h
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        busy, total = await store.with_connection(lambda c: c.fetchrow(sql, description))
        if total and not busy:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{busy} in flight or due"
        await asyncio.sleep(0.05)


def _in_order_per_relationship(received: list[dict[str, Any]]) -> dict[str, list[Any]]:
    per_subject: dict[str, list[Any]] = defaultdict(list)
    for delivery in received:
        per_subject[delivery["subject"]].append(delivery["key"])
    return per_subject


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_hostile_receiver_never_delays_a_good_one(
    store: EventStore, dsn: str, seed: int
) -> None:
    good = GoodReceiver(expected=RELATIONSHIPS * PER_RELATIONSHIP)
    hostile = HostileReceiver(random.Random(seed))
    failures: list[str] = []
    supervisor = Supervisor(on_failure=lambda name, _e: failures.append(name))
    # An attempt may take 10 minutes: whatever hangs, hangs until released.
    config = DispatcherConfig(
        retry_schedule=FAST, allow_private=True, timeout_s=600, per_endpoint=3,
        poll_interval_s=0.1, lease_s=1200,
    )  # fmt: skip
    async with (
        serving(good.handle) as good_url,
        raw_serving(hostile.handle) as hostile_url,
        outbox_runner(store, dsn) as repository,
        dispatching(store, config, supervisor),
    ):
        good.url, hostile.redirect_to = good_url, good_url
        _, good.secret = await endpoints.create(store, good_url, ["*"], "good", sealer=PLAIN)
        await endpoints.create(store, hostile_url, ["*"], "hostile", sealer=PLAIN)
        saved = []
        for _ in range(RELATIONSHIPS):
            relationship = walk_to("cultivation")
            await repository.save(relationship)
            saved.append(str(relationship.id))

        await _eventually(good.everything, lambda: f"good got {len(good.received)}")
        assert hostile.hanging >= 1  # the good one got everything while those hung
        hostile.release.set()
        # Every request the hostile receiver saw is an attempt in the log, and
        # none of its messages is left in flight.
        await _until_settled(store, "hostile")
        attempts = await store.with_connection(
            lambda c: c.fetchval(
                "SELECT count(*) FROM webhook_attempts a JOIN webhook_endpoints e"
                " ON e.id = a.endpoint_id WHERE e.description = 'hostile'"
            )
        )
        assert attempts == hostile.requests

        ids = [d["id"] for d in good.received]
        assert len(ids) == len(set(ids)) == good.expected  # no redirect was followed
        per_subject = _in_order_per_relationship(good.received)
        assert set(per_subject) == set(saved)
        for keys in per_subject.values():
            assert keys == sorted(keys) and len(keys) == PER_RELATIONSHIP
        assert hostile.requests > len(ODD_RETRY_AFTER)  # each was answered
    assert failures == []  # nothing a receiver did reached the supervisor


async def test_an_endpoint_that_hangs_holds_only_its_own_delivery_slots(
    store: EventStore, dsn: str
) -> None:
    """Every answer hangs: the dispatcher keeps `per_endpoint` of its
    messages in flight, no more, and claims nothing else of it meanwhile."""
    hostile = HostileReceiver(random.Random(0), kinds=("hang",))
    good = GoodReceiver(expected=PER_RELATIONSHIP + 3 * (walk_to("identification").version + 1))
    supervisor = Supervisor()
    config = DispatcherConfig(
        retry_schedule=FAST, allow_private=True, timeout_s=600, per_endpoint=2,
        poll_interval_s=0.1, lease_s=1200,
    )  # fmt: skip
    async with (
        serving(good.handle) as good_url,
        raw_serving(hostile.handle) as hostile_url,
        outbox_runner(store, dsn) as repository,
        dispatching(store, config, supervisor),
    ):
        _, good.secret = await endpoints.create(store, good_url, ["*"], "good", sealer=PLAIN)
        await endpoints.create(store, hostile_url, ["*"], "hostile", sealer=PLAIN)
        for _ in range(3):  # three relationships: three messages could go at once
            await repository.save(walk_to("identification"))
        await repository.save(walk_to("cultivation"))
        await _eventually(good.everything, lambda: f"good got {len(good.received)}")
        await _until(lambda: hostile.hanging >= 2)
        leased = await store.with_connection(
            lambda c: c.fetchval(
                "SELECT count(*) FROM webhook_messages m JOIN webhook_endpoints e"
                " ON e.id = m.endpoint_id WHERE e.description = 'hostile'"
                " AND m.lease_until > now()"
            )
        )
        assert hostile.requests == hostile.hanging == leased == 2
        hostile.release.set()


async def test_a_failure_in_the_dispatchers_own_work_is_counted_and_delivery_comes_back(
    store: EventStore, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work fails once after claiming; the supervisor counts it, the
    release gives the claimed leases back (they last 20 minutes here, so
    nothing else would), and the restarted dispatcher delivers everything."""
    good = GoodReceiver(expected=PER_RELATIONSHIP)
    failures: list[tuple[str, str]] = []
    supervisor = Supervisor(
        on_failure=lambda name, error: failures.append((name, repr(error))),
        initial_backoff_s=0.05,
    )
    real_targets = endpoints.delivery_targets
    calls = 0

    async def failing_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected")
        return await real_targets(*args, **kwargs)

    # The module the dispatcher calls it through (service.webhooks.dispatcher.endpoints).
    monkeypatch.setattr(endpoints, "delivery_targets", failing_once)
    config = DispatcherConfig(
        retry_schedule=FAST, allow_private=True, timeout_s=5, poll_interval_s=0.1, lease_s=1200
    )
    async with (
        serving(good.handle) as good_url,
        outbox_runner(store, dsn) as repository,
        dispatching(store, config, supervisor),
    ):
        _, good.secret = await endpoints.create(store, good_url, ["*"], "good", sealer=PLAIN)
        await repository.save(walk_to("cultivation"))
        await _eventually(good.everything, lambda: f"good got {len(good.received)}", 30)
        assert failures == [(DISPATCHER_TASK, "RuntimeError('injected')")]
        (state,) = [s for s in supervisor.states() if s.name == DISPATCHER_TASK]
        assert state.restarts == 1 and state.running
        ids = [d["id"] for d in good.received]
        assert len(ids) == len(set(ids)) == PER_RELATIONSHIP


async def test_a_dispatcher_in_the_app_runs_under_the_services_supervisor(
    store: EventStore, dsn: str
) -> None:
    from service.http.app import create_app
    from service.http.context import SERVICES

    app = create_app(Settings(), store, dsn, background=True)
    services = app[SERVICES]
    for startup in app.on_startup:
        await startup(app)
    try:
        assert {"webhook-dispatcher", "webhook-listener"} <= set(services.supervisor.names())
    finally:
        for cleanup in app.on_cleanup:
            await cleanup(app)
    assert services.supervisor.names() == []


# --- every answer is an outcome of its message --------------------------------

HEADER_NAMES = st.sampled_from(
    [b"Retry-After", b"Location", b"Content-Type", b"Set-Cookie", b"Content-Encoding",
     b"X-Junk", b"\xff\xfe", b"Retry-After "]
)  # fmt: skip
RETRY_AFTER = st.one_of(
    # digits that are not ASCII: str.isdigit() and int() accept some, float() not all
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=6).map(str.encode),
    st.binary(max_size=40),
    st.text(st.characters(max_codepoint=255), max_size=40).map(lambda t: t.encode("latin-1")),
    st.text(max_size=20).map(str.encode),
    st.integers(-(10**30), 10**30).map(lambda n: str(n).encode()),
    st.sampled_from([b"Fri, 31 Dec 9999 23:59:59 GMT", b"Mon, 01 Jan 0001 00:00:00 +2400"]),
)
ANSWERS = st.fixed_dictionaries(
    {
        "status": st.integers(100, 999),
        "headers": st.lists(st.tuples(HEADER_NAMES, st.binary(max_size=60)), max_size=4),
        "retry_after": st.none() | RETRY_AFTER,
        "body": st.sampled_from([0, 1, 4096, 70_000, 3_000_000]),
        "framing": st.sampled_from(["length", "short", "chunked", "close"]),
        "delay": st.sampled_from([0.0, 0.0, 0.0, 0.05]),
    }
)


ODD: dict[str, Any] = {
    "status": 500, "headers": [], "retry_after": None, "body": 0, "framing": "length", "delay": 0.0,
}  # fmt: skip


@dataclass
class ScriptedReceiver:
    answer: dict[str, Any] = field(default_factory=dict)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        answer = self.answer
        await asyncio.sleep(answer["delay"])
        head = b"HTTP/1.1 %d X\r\n" % answer["status"]
        for name, value in answer["headers"]:
            head += name + b": " + value + b"\r\n"
        if answer["retry_after"] is not None:
            head += b"Retry-After: " + answer["retry_after"] + b"\r\n"
        size, framing = answer["body"], answer["framing"]
        if framing == "chunked":
            head += b"Transfer-Encoding: chunked\r\n"
        elif framing in ("length", "short"):
            head += b"Content-Length: %d\r\n" % (size * 2 if framing == "short" else size)
        writer.write(head + b"\r\n")
        chunk = b"z" * min(size, 65536)
        sent = 0
        while sent < size:
            piece = chunk[: size - sent]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked" else piece)
            await writer.drain()
            sent += len(piece)
        if framing == "chunked":
            writer.write(b"0\r\n\r\n")
        await writer.drain()


_MESSAGE = (
    "INSERT INTO webhook_messages (id, endpoint_id, position, relationship_id, webhook_type, body)"
    " VALUES ($1, $2, $3, $4, 'relationship.test', '{\"specversion\": \"1.0\"}')"
    " RETURNING id, endpoint_id, body, attempts"
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(answer=ANSWERS)
@example(answer={**ODD, "status": 429, "retry_after": "²".encode()})
@example(answer={**ODD, "status": 503, "retry_after": b"Fri, 31 Dec 9999 23:59:59 GMT"})
@example(answer={**ODD, "status": 200, "headers": [(b"Retry-After", b"\xff\xfe")]})
async def test_every_receiver_answer_is_recorded_as_an_attempt_of_its_message(
    store: EventStore, answer: dict[str, Any]
) -> None:
    receiver = ScriptedReceiver(answer)
    config = DispatcherConfig(retry_schedule=FAST, allow_private=True, timeout_s=2)
    dispatcher = Dispatcher(store, config)
    async with raw_serving(receiver.handle) as url:
        view, _ = await endpoints.create(store, url, ["*"], "scripted", sealer=PLAIN)
        endpoint_id = uuid.UUID(view["id"])
        targets = await endpoints.delivery_targets(store, [endpoint_id], sealer=PLAIN)
        message = uuid.uuid4()
        row = await store.with_connection(
            lambda c: c.fetchrow(_MESSAGE, message, endpoint_id, 1, uuid.uuid4())
        )
        dispatcher._open_session()
        try:
            await dispatcher._deliver(row, targets[endpoint_id])  # must not raise
        finally:
            await dispatcher.stop()
    attempts = await store.with_connection(
        lambda c: c.fetch("SELECT * FROM webhook_attempts WHERE message_id = $1", message)
    )
    stored = await store.with_connection(
        lambda c: c.fetchrow("SELECT * FROM webhook_messages WHERE id = $1", message)
    )
    (attempt,) = attempts
    assert attempt["attempt"] == 1 and stored["attempts"] == 1
    assert stored["lease_until"] is None
    if attempt["status"] is None:
        assert attempt["error"]
    else:
        assert attempt["status"] == answer["status"]
    delivered = attempt["status"] is not None and 200 <= attempt["status"] < 300
    assert (stored["state"] == "delivered") is delivered
    assert (attempt["error"] is None) is delivered
    if not delivered and attempt["status"] != 410:
        assert attempt["next_retry_at"] is not None
    await store.with_connection(lambda c: c.execute("DELETE FROM webhook_endpoints"))


@given(
    st.one_of(st.none(), st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")))
)
def test_retry_after_is_a_bounded_number_of_seconds_or_nothing(raw: str | None) -> None:
    seconds = _retry_after(raw)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER_S


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("9" * 5000, MAX_RETRY_AFTER_S),
        ("²", None), ("١٢", None), ("-1", None), ("1.5", None), ("nan", None), ("", None),
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_S),
        ("Tue, 32 Foo 2026 99:99:99 +9999", None), ("ma\udcf1ana", None), (None, None),
    ],
)  # fmt: skip
def test_retry_after_cases(raw: str | None, expected: float | None) -> None:
    assert _retry_after(raw) == expected
