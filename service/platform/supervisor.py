"""One supervisor for every background task of a process.

A background task (the webhook dispatcher, each projection's worker, and the
workers later capabilities add) is a coroutine that runs until it is
cancelled. Whatever else ends it is unexpected: the supervisor logs it with
the task's name, counts it, lets the task release what it had claimed (a
lease, an advisory lock, claimed outbox rows), and starts it again after a
back-off that doubles up to a ceiling and resets once a run has lasted a
while. A task that simply returns is restarted too: nothing here is meant to
finish on its own.

Why one supervisor rather than a loop in each worker: the policy (log, count,
release, back off, restart) is the same everywhere, and a worker that forgot
part of it (an exception type not caught, an error raised outside its
per-message handling) was how a single odd receiver answer once ended
webhook delivery for good.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from service.platform.tasks import cancel_and_wait

log = logging.getLogger("mentorflow.supervisor")

Body = Callable[[], Awaitable[Any]]
Release = Callable[[], Awaitable[Any]]

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0
"""A run that lasted this long resets the back-off: the failure before it is old news."""


@dataclass
class TaskState:
    """What the supervisor knows of one task (for /readyz and /metrics)."""

    name: str
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    running: bool = False


@dataclass
class _Supervised:
    body: Body
    release: Release | None
    state: TaskState
    task: asyncio.Task[None] | None = None


@dataclass
class Supervisor:
    """Starts, restarts and stops the process's background tasks.

    ``on_failure(name, error)`` is called for every unexpected end (a metric
    counts them); ``initial_backoff_s`` and ``max_backoff_s`` bound the wait
    before a restart.
    """

    on_failure: Callable[[str, BaseException | None], None] = lambda _n, _e: None
    initial_backoff_s: float = INITIAL_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S
    healthy_after_s: float = HEALTHY_AFTER_S
    _tasks: dict[str, _Supervised] = field(default_factory=dict)

    def spawn(self, name: str, body: Body, *, release: Release | None = None) -> None:
        """Run ``body`` as task ``name`` until :meth:`stop` (or :meth:`cancel`).

        ``release`` runs after every unexpected end, before the back-off, to
        give back what the failed run had claimed. Spawning a name that is
        already running is an error: two copies of one worker in one process
        would only compete with each other.
        """
        existing = self._tasks.get(name)
        if existing is not None and existing.task is not None and not existing.task.done():
            raise RuntimeError(f"background task {name!r} is already running")
        supervised = _Supervised(body, release, TaskState(name))
        supervised.task = asyncio.create_task(self._run(supervised), name=name)
        self._tasks[name] = supervised

    def states(self) -> list[TaskState]:
        return [supervised.state for supervised in self._tasks.values()]

    def names(self) -> list[str]:
        return list(self._tasks)

    async def cancel(self, name: str) -> None:
        """Stop one task (and forget it)."""
        supervised = self._tasks.pop(name, None)
        if supervised is not None and supervised.task is not None:
            await cancel_and_wait(supervised.task)

    async def stop(self) -> None:
        """Stop every task and wait until each has ended."""
        tasks = [s.task for s in self._tasks.values() if s.task is not None]
        self._tasks.clear()
        await cancel_and_wait(*tasks)

    async def _run(self, supervised: _Supervised) -> None:
        state = supervised.state
        backoff = self.initial_backoff_s
        while True:
            started = time.monotonic()
            error: BaseException | None = None
            state.running = True
            try:
                await supervised.body()
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:
                error = exc
                log.exception("background task %s failed; restarting", state.name)
            else:
                log.error("background task %s returned; restarting", state.name)
            state.running = False
            state.restarts += 1
            state.last_error = "returned" if error is None else f"{type(error).__name__}: {error}"
            state.last_error_at = time.time()
            self.on_failure(state.name, error)
            await self._release(supervised)
            if time.monotonic() - started >= self.healthy_after_s:
                backoff = self.initial_backoff_s
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    async def _release(self, supervised: _Supervised) -> None:
        if supervised.release is None:
            return
        try:
            await supervised.release()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Whatever it held is released by its lease expiring instead.
            log.exception("background task %s could not release its claims", supervised.state.name)
