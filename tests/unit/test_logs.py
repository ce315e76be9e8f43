"""MENTORFLOW_LOG_FORMAT: readable text for a person, JSON lines for machines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from service.platform import logs
from service.platform.settings import Settings, SettingsError


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("mentorflow.test", logging.WARNING, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


@pytest.fixture
def root_handlers() -> Iterator[None]:
    saved = logging.getLogger().handlers[:]
    yield
    logging.getLogger().handlers[:] = saved


def test_json_lines_carry_the_extra_fields() -> None:
    entry = json.loads(logs.JsonFormatter().format(_record("request", status=201)))
    assert entry["msg"] == "request" and entry["status"] == 201 and entry["level"] == "warning"


def test_text_is_one_readable_line() -> None:
    line = logs.TextFormatter().format(_record("slow", ms=12))
    assert "warning" in line and "mentorflow.test: slow" in line and line.endswith("ms=12")
    assert "\n" not in line and not line.startswith("{")


@pytest.mark.parametrize(
    ("form", "tty", "expected"),
    [
        ("json", True, logs.JsonFormatter),
        ("text", False, logs.TextFormatter),
        ("auto", True, logs.TextFormatter),
        ("auto", False, logs.JsonFormatter),
    ],
)
def test_configure_picks_the_format(
    root_handlers: None, monkeypatch: pytest.MonkeyPatch, form: str, tty: bool, expected: type
) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr(sys, "stderr", Stream())
    logs.configure(form)
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, expected)


@pytest.mark.parametrize("value", ["TEXT", "json", " auto "])
def test_the_setting_accepts_its_values(value: str) -> None:
    assert Settings.from_env({"MENTORFLOW_LOG_FORMAT": value}).log_format == value.strip().lower()


def test_the_setting_refuses_anything_else() -> None:
    with pytest.raises(SettingsError, match="MENTORFLOW_LOG_FORMAT"):
        Settings.from_env({"MENTORFLOW_LOG_FORMAT": "xml"})


class _Writes(io.StringIO):
    """A stream that remembers each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def _handler(stream: _Writes) -> logs.LineBatchingHandler:
    handler = logs.LineBatchingHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


async def test_lines_of_one_loop_turn_leave_in_one_write_at_its_end() -> None:
    stream = _Writes()
    handler = _handler(stream)
    for n in range(3):
        handler.handle(_record(f"line {n}"))
    assert stream.calls == []  # not yet: the turn is not over
    await asyncio.sleep(0)
    assert stream.calls == ["line 0\nline 1\nline 2\n"]
    handler.handle(_record("next turn"))
    await asyncio.sleep(0)
    assert stream.calls[1:] == ["next turn\n"]


async def test_a_line_from_another_thread_is_written_at_once_after_the_waiting_ones() -> None:
    stream = _Writes()
    handler = _handler(stream)
    handler.handle(_record("from the loop"))
    await asyncio.to_thread(handler.handle, _record("from a thread"))
    assert stream.getvalue() == "from the loop\nfrom a thread\n"


def test_outside_a_loop_each_line_is_written_at_once_and_flush_empties_the_rest() -> None:
    stream = _Writes()
    handler = _handler(stream)
    handler.handle(_record("alone"))
    assert stream.getvalue() == "alone\n"
    handler.flush()
    assert stream.calls == ["alone\n"]
