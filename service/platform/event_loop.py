"""Which event loop runs the service: uvloop where it is installed.

uvloop's loop and transports are written in C; a POST spends a fair share of
its time in the loop and in socket reads and writes, so the HTTP path gains
from it (bench/http.py measures both loops). `asyncio` stays selectable, and is
what platforms without uvloop (Windows) get.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for `choice` (`auto`, `uvloop`, `asyncio`); None: asyncio's own."""
    if choice == "asyncio" or not uvloop_installed():
        return None
    import uvloop

    return uvloop.new_event_loop


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """`asyncio.run` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def name() -> str:
    """The running loop's implementation, as `/metrics` and the bench report it."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
