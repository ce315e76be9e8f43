"""Webhook delivery end to end inside one process: events appended to the real
store, the outbox projection run by the real runner, the dispatcher posting
to a real receiver on 127.0.0.1 that checks every delivery with libraries
nobody here wrote (standardwebhooks, cloudevents)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import standardwebhooks
from aiohttp import web
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from domain import Envelope, create_cipher_key
from domain.samples import walk_to
from service.platform.settings import Settings
from service.projection_runner import ProjectionRunner
from service.relationships.codec import mapper_for
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from service.webhooks import endpoints
from service.webhooks.dispatcher import Dispatcher, DispatcherConfig
from service.webhooks.outbox import WebhookOutbox
from service.webhooks.sealing import SecretSealer
from tests.support.receiver import serving

pytestmark = pytest.mark.db

FAST = (0.2, 0.2, 0.2, 0.2)


@dataclass
class Receiver:
    """An HTTP receiver whose answers the test scripts, in order."""

    secrets: list[str] = field(default_factory=list)
    script: list[int | float] = field(default_factory=list)  # status, or a delay in s
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified = [self._verifies(secret, body, headers) for secret in self.secrets]
        event = from_http_event(HTTPMessage(headers, body))
        self.received.append(
            {"headers": headers, "event": event, "verified": verified, "body": body}
        )
        action = self.script.pop(0) if self.script else 200
        if isinstance(action, float):
            await asyncio.sleep(action)
            return web.Response(status=200)
        extra = {"Retry-After": "1"} if action == 429 else {}
        return web.Response(status=action, headers=extra)

    @staticmethod
    def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
        try:
            standardwebhooks.Webhook(secret).verify(body, headers)
        except standardwebhooks.WebhookVerificationError:
            return False
        return True


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with serving(receiver.handle) as url:
        receiver.url = url
        yield receiver


@dataclass
class Pipeline:
    store: EventStore
    repository: RelationshipRepository
    runner: ProjectionRunner
    dispatchers: list[Dispatcher]

    @property
    def dispatcher(self) -> Dispatcher:
        return self.dispatchers[0]


SEALER = SecretSealer(create_cipher_key())
"""Secrets are stored sealed in these tests, as with MENTORFLOW_CIPHER_KEY set."""


def config(**overrides: Any) -> DispatcherConfig:
    options: dict[str, Any] = {
        "retry_schedule": FAST, "allow_private": True, "timeout_s": 2.0, "poll_interval_s": 0.1,
        "sealer": SEALER, **overrides,
    }  # fmt: skip
    return DispatcherConfig(**options)


@asynccontextmanager
async def running_pipeline(
    store: EventStore, dsn: str, *configs: DispatcherConfig
) -> AsyncIterator[Pipeline]:
    """The outbox projection under the real runner, and dispatchers (one with
    the default config unless `configs` are given)."""
    repository = RelationshipRepository(store, mapper_for(Settings()))
    runner = ProjectionRunner(
        store, dsn, lambda r: repository.decode(r).event, [WebhookOutbox()], poll_interval=0.1
    )
    dispatchers = [Dispatcher(store, c) for c in (configs or (config(),))]
    await runner.start()
    for dispatcher in dispatchers:
        await dispatcher.start()
    try:
        yield Pipeline(store, repository, runner, dispatchers)
    finally:
        for dispatcher in dispatchers:
            await dispatcher.stop()
        await runner.stop()


@pytest.fixture
async def pipeline(store: EventStore, dsn: str) -> AsyncIterator[Pipeline]:
    async with running_pipeline(store, dsn) as running:
        yield running


async def _subscribe(pipeline: Pipeline, receiver: Receiver, types: list[str]) -> str:
    view, secret = await endpoints.create(
        pipeline.store, receiver.url, types, "test", sealer=SEALER
    )
    receiver.secrets.append(secret)
    return str(view["id"])


async def _logged(pipeline_or_store: Any, endpoint_id: Any, count: int) -> list[dict[str, Any]]:
    """The delivery log once it holds `count` attempts (the receiver answers
    before the dispatcher writes the attempt down)."""
    store = getattr(pipeline_or_store, "store", pipeline_or_store)
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        log = await endpoints.attempts(store, uuid.UUID(str(endpoint_id)), None, 50)
        if len(log) >= count or asyncio.get_running_loop().time() > deadline:
            return log
        await asyncio.sleep(0.02)


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def test_phase_changes_arrive_signed_and_as_cloudevents(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    await _subscribe(pipeline, receiver, ["relationship.phase_changed"])
    relationship = walk_to("cultivation")
    await pipeline.repository.save(relationship)
    await _until(lambda: len(receiver.received) == 3)
    phases = [r["event"].get_data()["to_phase"] for r in receiver.received]
    assert phases == ["identification", "establishment", "cultivation"]
    for delivery in receiver.received:
        assert delivery["verified"] == [True]
        headers, event = delivery["headers"], delivery["event"]
        assert headers["Content-Type"] == "application/cloudevents+json"
        assert not any(name.lower().startswith("ce-") for name in headers)
        assert event.get_id() == headers["webhook-id"]
        assert event.get_type() == "org.mentorflow.relationship.phase_changed"
        assert event.get_source() == f"/relationships/{relationship.id}"
        assert event.get_subject() == str(relationship.id)
        assert set(event.get_data()) == {
            "relationship_id", "from_phase", "to_phase", "event_type", "version", "at",
        }  # fmt: skip


async def test_thin_data_never_carries_confidential_fields(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    await _subscribe(pipeline, receiver, ["relationship.reflection.recorded"])
    relationship = walk_to("reflection")
    relationship.record(
        "reflection.recorded",
        {"author_role": "mentee", "kind": "interim", "notes": "top secret", "values": "v"},
        _envelope(),
    )
    await pipeline.repository.save(relationship)
    await _until(lambda: len(receiver.received) == 2)  # walk_to recorded the initial one
    assert all(b"top secret" not in r["body"] for r in receiver.received)
    data = receiver.received[1]["event"].get_data()
    assert data["kind"] == "interim" and data["author_role"] == "mentee"
    assert not {"notes", "values", "work_style"} & set(data)


async def test_an_agreements_version_does_not_replace_the_streams_version(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    await _subscribe(pipeline, receiver, ["relationship.agreement.proposed"])
    relationship = walk_to("establishment")  # it proposes agreement version 1 on the way
    version = relationship.version
    await pipeline.repository.save(relationship)
    await _until(lambda: len(receiver.received) == 1)
    data = receiver.received[0]["event"].get_data()
    assert data["agreement_version"] == 1
    assert data["version"] == json.loads(receiver.received[0]["body"])["sequence"] != 1
    assert data["version"] <= version


async def test_failures_are_retried_with_the_same_webhook_id(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    endpoint_id = await _subscribe(pipeline, receiver, ["relationship.phase_changed"])
    receiver.script = [500, 503]
    await pipeline.repository.save(walk_to("identification"))
    await _until(lambda: len(receiver.received) == 3)
    ids = {r["headers"]["webhook-id"] for r in receiver.received}
    assert len(ids) == 1
    log = await _logged(pipeline, endpoint_id, 3)
    assert [a["status_code"] for a in reversed(log)] == [500, 503, 200]
    assert log[-1]["next_retry_at"] is not None and log[0]["next_retry_at"] is None


async def test_gone_disables_the_endpoint(pipeline: Pipeline, receiver: Receiver) -> None:
    endpoint_id = await _subscribe(pipeline, receiver, ["*"])
    receiver.script = [410]
    await pipeline.repository.save(walk_to("identification"))
    await _until(lambda: len(receiver.received) >= 1)
    await asyncio.sleep(0.5)
    view = await endpoints.get(pipeline.store, uuid.UUID(endpoint_id))
    assert view is not None and view["enabled"] is False
    assert "410" in view["disabled_reason"]
    assert len(receiver.received) == 1


async def test_a_slow_receiver_times_out_and_is_retried(
    store: EventStore, dsn: str, receiver: Receiver
) -> None:
    async with running_pipeline(store, dsn, config(timeout_s=0.3)) as pipeline:
        endpoint_id = await _subscribe(pipeline, receiver, ["relationship.phase_changed"])
        receiver.script = [1.0]
        await pipeline.repository.save(walk_to("identification"))
        await _until(lambda: len(receiver.received) >= 2)
        log = await _logged(pipeline, endpoint_id, 2)
        assert "timed out" in (log[-1]["error"] or "")
        assert log[0]["status_code"] == 200


async def test_retry_after_is_honoured(pipeline: Pipeline, receiver: Receiver) -> None:
    endpoint_id = await _subscribe(pipeline, receiver, ["relationship.phase_changed"])
    receiver.script = [429]
    await pipeline.repository.save(walk_to("identification"))
    await _until(lambda: len(receiver.received) == 2)
    log = await _logged(pipeline, endpoint_id, 2)
    first = log[-1]
    retry_at = datetime.fromisoformat(first["next_retry_at"])
    attempted = datetime.fromisoformat(first["attempted_at"])
    assert retry_at - attempted >= timedelta(seconds=0.9)  # Retry-After: 1, not 0.2 s


async def test_per_relationship_order_is_kept_through_failures(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    await _subscribe(pipeline, receiver, ["relationship.phase_changed"])
    receiver.script = [500, 500]
    await pipeline.repository.save(walk_to("cultivation"))
    await _until(lambda: len(receiver.received) == 5)
    delivered_in_order = [r["event"].get_data()["to_phase"] for r in receiver.received]
    assert delivered_in_order == [
        "identification", "identification", "identification", "establishment", "cultivation",
    ]  # fmt: skip


async def test_rotation_both_secrets_sign_during_the_overlap(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    endpoint_id = await _subscribe(pipeline, receiver, ["relationship.phase_changed"])
    rotated = await endpoints.rotate_secret(pipeline.store, uuid.UUID(endpoint_id), sealer=SEALER)
    assert rotated is not None
    new_secret, expires = rotated
    stored = await pipeline.store.with_connection(
        lambda c: c.fetchrow("SELECT secret, previous_secret FROM webhook_endpoints")
    )
    assert [SEALER.open(value) for value in stored.values()] == [new_secret, receiver.secrets[0]]
    assert not any(value.startswith("whsec_") for value in stored.values())  # sealed at rest
    assert expires - datetime.now(UTC) > timedelta(hours=23)
    receiver.secrets.append(new_secret)
    await pipeline.repository.save(walk_to("identification"))
    await _until(lambda: len(receiver.received) == 1)
    delivery = receiver.received[0]
    assert delivery["verified"] == [True, True]  # the old secret and the new one
    assert len(delivery["headers"]["webhook-signature"].split(" ")) == 2


async def test_manual_retry_and_recover(pipeline: Pipeline, receiver: Receiver) -> None:
    endpoint_id = uuid.UUID(await _subscribe(pipeline, receiver, ["relationship.phase_changed"]))
    receiver.script = [500] * 5
    await pipeline.repository.save(walk_to("identification"))
    await _until(lambda: len(receiver.received) == 5)  # first try + 4 retries, then failed
    log = await _logged(pipeline, endpoint_id, 5)
    assert log[0]["state"] == "failed"
    delivery_id = uuid.UUID(log[0]["delivery_id"])

    assert await endpoints.retry(pipeline.store, endpoint_id, delivery_id)
    pipeline.dispatcher.wake()
    await _until(lambda: len(receiver.received) == 6)
    assert (
        receiver.received[-1]["headers"]["webhook-id"]
        == receiver.received[0]["headers"]["webhook-id"]
    )

    receiver.script = [500] * 5
    await pipeline.repository.save(walk_to("identification"))
    await _until(lambda: len(receiver.received) == 11)
    await _logged(pipeline, endpoint_id, 11)
    requeued = await endpoints.recover(
        pipeline.store, endpoint_id, datetime.now(UTC) - timedelta(minutes=5)
    )
    assert requeued == 1
    pipeline.dispatcher.wake()
    await _until(lambda: len(receiver.received) == 12)


async def test_only_events_after_subscribing_are_sent(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    await pipeline.repository.save(walk_to("identification"))
    await pipeline.runner.wait_until_projected(
        "webhook_outbox", await pipeline.store.max_position(), timeout=10
    )
    await _subscribe(pipeline, receiver, ["*"])
    later = walk_to("reflection")  # opened, then the initial reflection
    await pipeline.repository.save(later)
    await _until(lambda: len(receiver.received) == 2)
    await asyncio.sleep(0.5)
    assert len(receiver.received) == 2
    assert {r["event"].get_subject() for r in receiver.received} == {str(later.id)}
    assert [r["event"].get_type() for r in receiver.received] == [
        "org.mentorflow.relationship.relationship.opened",
        "org.mentorflow.relationship.reflection.recorded",
    ]


def _envelope() -> Envelope:
    return Envelope(datetime.now(UTC), None, "tests", None, None)


async def test_a_dispatcher_killed_mid_delivery_is_taken_over_with_the_same_id(
    store: EventStore, dsn: str, receiver: Receiver
) -> None:
    leased = config(timeout_s=30, lease_s=1.0)
    async with running_pipeline(store, dsn, leased) as pipeline:
        await _subscribe(pipeline, receiver, ["relationship.phase_changed"])
        receiver.script = [5.0]  # the first delivery hangs...
        await pipeline.repository.save(walk_to("identification"))
        await _until(lambda: len(receiver.received) == 1)
        await pipeline.dispatcher.stop()  # ...and its dispatcher dies holding the lease
        second = Dispatcher(store, leased)
        await second.start()
        try:
            await _until(lambda: len(receiver.received) == 2)
        finally:
            await second.stop()
        ids = [r["headers"]["webhook-id"] for r in receiver.received]
        assert ids[0] == ids[1]


async def test_several_dispatchers_share_the_work_without_duplicates(
    store: EventStore, dsn: str, receiver: Receiver
) -> None:
    async with running_pipeline(store, dsn, config(), config(), config()) as pipeline:
        await _subscribe(pipeline, receiver, ["*"])
        for _ in range(10):
            await pipeline.repository.save(walk_to("cultivation"))
        expected = 10 * (walk_to("cultivation").version + 3)  # every event + 3 phase changes
        await _until(lambda: len(receiver.received) == expected, timeout=60)
        await asyncio.sleep(0.5)
        ids = [r["headers"]["webhook-id"] for r in receiver.received]
        assert len(ids) == len(set(ids)) == expected


async def test_an_endpoint_failing_for_five_days_is_disabled(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    endpoint_id = uuid.UUID(await _subscribe(pipeline, receiver, ["relationship.phase_changed"]))
    await pipeline.store.with_connection(
        lambda c: c.execute(
            "UPDATE webhook_endpoints SET failing_since = now() - interval '5 days 1 hour'"
            " WHERE id = $1",
            endpoint_id,
        )
    )
    receiver.script = [500]
    await pipeline.repository.save(walk_to("identification"))
    await _logged(pipeline, endpoint_id, 1)
    view = await endpoints.get(pipeline.store, endpoint_id)
    assert view is not None and view["enabled"] is False
    assert "5 days" in view["disabled_reason"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_delivery_refuses_a_private_target_without_the_setting(
    store: EventStore, dsn: str, receiver: Receiver, host: str
) -> None:
    """The check is repeated at delivery, on the address actually connected to."""
    async with running_pipeline(store, dsn, config(allow_private=False)) as pipeline:
        url = receiver.url.replace("127.0.0.1", host)
        view, _ = await endpoints.create(store, url, ["*"], None, sealer=SEALER)
        await pipeline.repository.save(walk_to("reflection"))
        log = await _logged(pipeline, view["id"], 1)
        assert log and log[-1]["status_code"] is None
        assert "non-public" in (log[-1]["error"] or "")
        assert receiver.received == []
