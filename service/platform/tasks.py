"""Stopping background tasks without losing the stopper's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait until every one has ended; what they ended with
    (cancelled, or an error) is consumed, since the caller asked them to stop.

    Not ``task.cancel(); with suppress(CancelledError): await task``: that also
    swallows a cancellation of the *caller* that lands while it waits. A caller
    in a loop that restarts after an error (a projection worker whose batch
    just failed, stopping its reader) then never stops, and whoever cancelled
    it waits for ever. Here the caller's own cancellation always propagates.
    """
    for task in tasks:
        task.cancel()
        task.add_done_callback(_consume)
    if tasks:
        await asyncio.wait(tasks)


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" log
