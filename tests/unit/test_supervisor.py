"""The supervisor restarts a background task after any unexpected end, lets
it release its claims first, backs off, and stops it cleanly."""

from __future__ import annotations

import asyncio

from service.platform.supervisor import Supervisor


async def test_a_failing_task_is_released_and_restarted_with_backoff() -> None:
    runs: list[int] = []
    released: list[int] = []
    failures: list[str] = []
    running = asyncio.Event()

    async def body() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError(f"injected failure {len(runs)}")
        running.set()
        await asyncio.Event().wait()

    async def release() -> None:
        released.append(len(runs))

    supervisor = Supervisor(
        on_failure=lambda name, _error: failures.append(name),
        initial_backoff_s=0.01,
        max_backoff_s=0.02,
    )
    supervisor.spawn("worker", body, release=release)
    async with asyncio.timeout(5):
        await running.wait()
    (state,) = supervisor.states()
    assert state.restarts == 2 and state.running
    assert state.last_error == "RuntimeError: injected failure 2"
    assert released == [1, 2]
    assert failures == ["worker", "worker"]
    await supervisor.stop()
    assert supervisor.states() == []


async def test_a_task_that_returns_is_restarted_and_a_failing_release_does_not_stop_it() -> None:
    runs = 0
    third = asyncio.Event()

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs >= 3:
            third.set()
            await asyncio.Event().wait()

    async def release() -> None:
        raise ConnectionError("database away")

    supervisor = Supervisor(initial_backoff_s=0.01)
    supervisor.spawn("returns", body, release=release)
    async with asyncio.timeout(5):
        await third.wait()
    assert supervisor.states()[0].last_error == "returned"
    await supervisor.stop()


async def test_stop_cancels_a_task_waiting_in_its_backoff_and_names_are_unique() -> None:
    async def body() -> None:
        raise ValueError("always")

    supervisor = Supervisor(initial_backoff_s=60)
    supervisor.spawn("failing", body)
    try:
        supervisor.spawn("failing", body)
    except RuntimeError as exc:
        assert "already running" in str(exc)
    else:
        raise AssertionError("a second copy of a running task was accepted")
    await asyncio.sleep(0.05)
    async with asyncio.timeout(2):
        await supervisor.stop()
