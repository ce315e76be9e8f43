"""Loops that wait with a timeout must stop when their task is cancelled.

On Python 3.11, `asyncio.wait_for` returns the awaited result instead of
raising CancelledError when the cancellation arrives in the loop iteration
after the awaited thing completed. A `while True` loop around it then never
ends, and whoever cancelled it (ProjectionRunner.stop, a subscription's
owner) waits for ever. That is how a projection-runner test hung in the full
suite: stop() cancelled a worker just as the log reader handed it a batch.

Each test wakes the waiter and cancels it 0..N loop iterations later, so the
one iteration where the race lies is always among them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from service.platform.tasks import cancel_and_wait
from service.projection_runner.running import next_batch
from service.store.records import StoredRecord
from service.store.subscriptions import Notifier, Subscription

OFFSETS = range(8)


async def assert_cancel_is_honoured(
    start: Callable[[], Coroutine[Any, Any, object]], wake: Callable[[], None], offset: int
) -> None:
    """Start the waiter, let it block, wake it, cancel it `offset` loop
    iterations later: unless it had finished by then, it must end as
    cancelled, promptly."""
    task = asyncio.create_task(start())
    await asyncio.sleep(0.02)  # blocked in its timed wait by now
    assert not task.done()
    wake()
    for _ in range(offset):
        await asyncio.sleep(0)
    if task.done():
        return  # it finished before the cancellation: nothing was swallowed
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done, f"cancellation swallowed (offset {offset}): the task kept running"
    assert task.cancelled(), f"cancellation swallowed (offset {offset}): {task.result()!r}"


@pytest.mark.parametrize("offset", OFFSETS)
async def test_a_waiting_subscription_stops_when_cancelled(offset: int) -> None:
    async def empty_log(after: int, limit: int, topics: Sequence[str]) -> list[StoredRecord]:
        return []

    notifier = Notifier("postgresql://unused", "unused", "unused")  # never started
    subscription = Subscription(empty_log, notifier, 0, poll_interval=60)
    try:
        # What anext(subscription) returns: typed a mere Awaitable, which create_task refuses.
        await assert_cancel_is_honoured(subscription.__anext__, notifier.wake_all, offset)
    finally:
        subscription.stop()


@pytest.mark.parametrize("offset", OFFSETS)
async def test_a_worker_waiting_for_a_batch_stops_when_cancelled(offset: int) -> None:
    queue: asyncio.Queue[list[Any]] = asyncio.Queue()
    reader = asyncio.create_task(asyncio.sleep(3600))
    try:
        await assert_cancel_is_honoured(
            lambda: next_batch(queue, reader, batch_size=1000, poll_interval=60),
            lambda: queue.put_nowait([object()]),
            offset,
        )
    finally:
        reader.cancel()


async def test_cancel_and_wait_lets_the_callers_own_cancellation_through() -> None:
    """A child that takes a while to end, and a caller cancelled meanwhile:
    the caller ends cancelled (not carrying on as if it had only stopped the
    child), and the child still ends."""
    child_ending = asyncio.Event()

    async def child() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            child_ending.set()
            await asyncio.sleep(0.2)  # closing a connection, say
            raise

    async def caller(task: asyncio.Task[None]) -> str:
        await cancel_and_wait(task)
        return "carried on"

    task = asyncio.create_task(child())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(caller(task))
    await child_ending.wait()
    stopper.cancel()
    done, _ = await asyncio.wait({stopper}, timeout=2)
    assert stopper in done and stopper.cancelled()
    await asyncio.wait({task}, timeout=2)
    assert task.cancelled()


async def test_cancel_and_wait_consumes_what_the_tasks_ended_with() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(failing())
    await asyncio.sleep(0)
    await cancel_and_wait(failed, asyncio.create_task(asyncio.sleep(3600)))
    assert failed.done()
