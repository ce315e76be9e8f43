"""Waiting, in end-to-end tests, for what a server does in the background
(deliveries, projections): one polling loop for all of them."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

POLL_S = 0.05


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], timeout: float = 30, what: str = "timed out"
) -> None:
    """Return once ``check()`` holds, asking every POLL_S seconds (a check
    that reads over HTTP is a coroutine function: it is awaited); fail the
    test with ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answer = check()
        held = await answer if inspect.isawaitable(answer) else answer
        if held:
            return
        assert loop.time() < deadline, what
        await asyncio.sleep(POLL_S)
