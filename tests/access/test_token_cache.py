"""The token cache: a busy token never waits for its lookup, concurrent
misses share one, and a revocation is never undone by a lookup that was
already on its way. Against a real PostgreSQL; the proxy below only counts
(and, where a test says so, holds back or fails) the registry's trips to it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from service.access.tokens import CACHE_SECONDS, REFRESH_AFTER_SECONDS, TokenRegistry
from service.store.errors import StoreUnavailable
from service.store.eventstore import EventStore


class CountingStore:
    """Passes every call to the real store; counts `with_connection`, and can
    hold the next one after it ran (`hold`) or fail it (`fail`)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.trips = 0
        self.hold: asyncio.Event | None = None
        self.holding = asyncio.Event()
        """Set once a call is held (it has run its query)."""
        self.fail = False

    async def with_connection(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        self.trips += 1
        if self.fail:
            raise StoreUnavailable("database unreachable: test")
        result = await self._store.with_connection(fn)
        hold, self.hold = self.hold, None
        if hold is not None:
            self.holding.set()
            await hold.wait()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _registry(store: EventStore) -> tuple[TokenRegistry, CountingStore, Clock, str]:
    token, _ = await TokenRegistry(store).create("writer", "cache-test")
    await TokenRegistry(store).authenticate(token)  # its first use is written down, once
    counting = CountingStore(store)
    registry = TokenRegistry(counting)  # type: ignore[arg-type]  # the store, its reads counted
    clock = Clock()
    registry.clock = clock
    return registry, counting, clock, token


async def _settled(registry: TokenRegistry) -> None:
    """Wait for the registry's lookups in flight (background ones included)."""
    while registry._lookups:
        await asyncio.gather(*registry._lookups.values(), return_exceptions=True)


async def test_concurrent_misses_share_one_lookup(store: EventStore) -> None:
    registry, counting, _, token = await _registry(store)
    found = await asyncio.gather(*(registry.authenticate(token) for _ in range(16)))
    assert counting.trips == 1
    assert {who.name if who else None for who in found} == {"cache-test"}


async def test_a_fresh_entry_answers_without_a_lookup(store: EventStore) -> None:
    registry, counting, clock, token = await _registry(store)
    await registry.authenticate(token)
    clock.now += REFRESH_AFTER_SECONDS / 2
    assert (await registry.authenticate(token)) is not None
    await _settled(registry)
    assert counting.trips == 1


async def test_a_busy_token_is_looked_up_again_while_its_entry_answers(store: EventStore) -> None:
    registry, counting, clock, token = await _registry(store)
    who = await registry.authenticate(token)
    assert who is not None
    clock.now += REFRESH_AFTER_SECONDS + 0.01
    counting.hold = asyncio.Event()
    answered = await asyncio.wait_for(registry.authenticate(token), 1)  # not held up
    assert answered == who and counting.trips == 2
    counting.hold.set()
    await _settled(registry)
    # The refreshed entry lives a whole CACHE_SECONDS from the refresh.
    clock.now += CACHE_SECONDS - 0.01
    assert (await registry.authenticate(token)) == who
    assert counting.trips == 2


async def test_a_revocation_elsewhere_is_seen_by_the_next_refresh(store: EventStore) -> None:
    registry, _, clock, token = await _registry(store)
    who = await registry.authenticate(token)
    assert who is not None
    assert await TokenRegistry(store).revoke(who.id)  # another process
    clock.now += REFRESH_AFTER_SECONDS + 0.01
    assert (await registry.authenticate(token)) == who  # the entry still answers once
    await _settled(registry)
    assert (await registry.authenticate(token)) is None


async def test_an_expired_entry_is_never_used(store: EventStore) -> None:
    registry, counting, clock, token = await _registry(store)
    who = await registry.authenticate(token)
    assert who is not None
    assert await TokenRegistry(store).revoke(who.id)  # another process
    clock.now += CACHE_SECONDS  # no request refreshed it in time
    assert (await registry.authenticate(token)) is None
    assert counting.trips == 2


async def test_a_lookup_on_its_way_during_a_revocation_is_not_kept(store: EventStore) -> None:
    registry, counting, _, token = await _registry(store)
    held = counting.hold = asyncio.Event()
    first = asyncio.ensure_future(registry.authenticate(token))
    await counting.holding.wait()  # the lookup has read the row
    who_id = (await TokenRegistry(store).list())[0][0].id
    assert await registry.revoke(who_id)
    held.set()
    assert (await first) is not None  # read before the revocation
    assert (await registry.authenticate(token)) is None  # but not kept


async def test_a_background_lookup_that_fails_leaves_the_entry_until_it_expires(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    registry, counting, clock, token = await _registry(store)
    who = await registry.authenticate(token)
    counting.fail = True
    clock.now += REFRESH_AFTER_SECONDS + 0.01
    assert (await registry.authenticate(token)) == who
    await _settled(registry)
    assert "token lookup failed" in caplog.text
    clock.now += CACHE_SECONDS
    with pytest.raises(StoreUnavailable):
        await registry.authenticate(token)
    counting.fail = False
    assert (await registry.authenticate(token)) == who


async def test_a_request_that_goes_away_does_not_cancel_the_shared_lookup(
    store: EventStore,
) -> None:
    registry, counting, _, token = await _registry(store)
    held = counting.hold = asyncio.Event()
    leaving = asyncio.ensure_future(registry.authenticate(token))
    staying = asyncio.ensure_future(registry.authenticate(token))
    await counting.holding.wait()
    leaving.cancel()
    held.set()
    assert (await staying) is not None
    assert counting.trips == 1
