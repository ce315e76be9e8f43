"""MENTORFLOW_LOG_FORMAT: readable text for a person, JSON lines for machines."""

from __future__ import annotations

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
