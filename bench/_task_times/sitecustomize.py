"""Loaded by `bench/http.py --task-times FILE` into the server process only
(through PYTHONPATH): times every callback the asyncio event loop runs and
writes, every two seconds, the loop's busy time by task (workers by their
task names, request handlers together), how many callbacks ran long, and for
each task its longest callback and how many took 5 ms or more: those are what
a request that arrives meanwhile waits for, so they make the p99.

It wraps `asyncio.events.Handle._run`, so it sees the standard loop only
(uvloop runs its callbacks in C). It adds about 2 µs per callback: compare
shares, not absolute times."""

from __future__ import annotations

import asyncio.events
import collections
import os
import sys
import threading
import time
from typing import Any

OUT = os.environ.get("MENTORFLOW_BENCH_TASK_TIMES")
LONG_MS = (1, 2, 5, 10)
SLOW_MS = 5


def _name(handle: asyncio.events.Handle) -> str:
    """The task a callback steps (its name when it has one, else its
    coroutine), or the callback's own name."""
    callback = handle._callback  # type: ignore[attr-defined]
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        named = task.get_name()
        coro = task.get_coro()
        where = getattr(coro, "__qualname__", type(coro).__name__)
        return where if named.startswith("Task-") else f"[{named}] {where}"
    return getattr(callback, "__qualname__", type(callback).__name__)


def _install(out: str) -> None:
    run = asyncio.events.Handle._run
    busy: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    long_calls = [0] * (len(LONG_MS) + 1)
    slow: collections.Counter[str] = collections.Counter()  # callbacks of >= SLOW_MS
    longest: dict[str, float] = collections.defaultdict(float)

    def timed(self: Any) -> None:
        name = _name(self) if self._callback is not None else "?"
        started = time.perf_counter()
        run(self)
        ms = (time.perf_counter() - started) * 1000
        busy[name] += ms
        calls[name] += 1
        long_calls[sum(ms >= limit for limit in LONG_MS)] += 1
        if ms >= SLOW_MS:
            slow[name] += 1
        longest[name] = max(longest[name], ms)

    def report() -> None:
        while True:
            time.sleep(2)
            total = sum(busy.values())
            lines = [
                f"loop busy {total / 1000:.2f} s in {sum(calls.values())} callbacks;"
                f" by duration (<1, 1-2, 2-5, 5-10, >=10 ms): {long_calls}"
            ]
            lines += [
                f"{ms:9.1f} ms {100 * ms / total:5.1f}% {calls[name]:7d}x"
                f"  longest {longest[name]:5.1f} ms, {slow[name]:3d} of >= {SLOW_MS} ms  {name}"
                for name, ms in sorted(busy.items(), key=lambda item: -item[1])[:30]
            ]
            with open(out + ".part", "w", encoding="utf-8") as file:
                file.write("\n".join(lines) + "\n")
            os.replace(out + ".part", out)  # whole, even when the process stops mid-write

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    threading.Thread(target=report, daemon=True, name="task-times").start()


if OUT and "service.cli" in sys.orig_argv:
    _install(OUT)
