"""MENTORFLOW_LOG_FORMAT: readable text for a person, JSON lines for machines."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

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


def test_a_field_named_like_the_lines_own_never_replaces_it() -> None:
    """ts, level and logger are the line's: an extra field of one of
    those names (hypothesis once drew "ts": None) must not blank them."""
    record = _record("request", ts=None, level="x", logger="y", status=201)
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["ts"] and entry["level"] == "warning" and entry["logger"] == "mentorflow.test"
    assert entry["msg"] == "request" and entry["status"] == 201


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


# --- log_fields: the access log's line without a LogRecord ---------------------------------

_FIELD_NAMES = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True).filter(
    lambda name: name not in logs._STANDARD
)
_FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)


@contextlib.contextmanager
def _sole_handler(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    """Root's only handler a LineBatchingHandler writing to a buffer, as
    `configure` sets it up (restored afterwards)."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    out = io.StringIO()
    handler = logs.LineBatchingHandler(out)
    handler.setFormatter(formatter)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def _without_time(line: str, form: str) -> object:
    if form == "json":
        entry = json.loads(line)
        assert entry.pop("ts")
        return entry
    return line.split(" ", 1)[1]  # after the time of day


@given(
    fields=st.dictionaries(_FIELD_NAMES, _FIELD_VALUES, max_size=6),
    message=st.text(min_size=1, max_size=10).filter(lambda m: "%" not in m),
    form=st.sampled_from(["json", "text"]),
)
@example(fields={"ts": None, "level": 1}, message="0", form="json")  # the line's own names
def test_log_fields_writes_the_line_logging_would(
    fields: dict[str, object], message: str, form: str
) -> None:
    formatter = logs.JsonFormatter() if form == "json" else logs.TextFormatter()
    log = logging.getLogger("mentorflow.test.fields")
    with _sole_handler(formatter) as out:
        log.info(message, extra=fields)
        through_logging = out.getvalue()
        out.truncate(0)
        out.seek(0)
        logs.log_fields(log, message, fields)
        direct = out.getvalue()
    assert _without_time(direct, form) == _without_time(through_logging, form)


def test_log_fields_goes_through_logging_when_a_filter_is_on_the_way() -> None:
    log = logging.getLogger("mentorflow.test.filtered")
    seen: list[logging.LogRecord] = []

    def keep_none(record: logging.LogRecord) -> bool:
        seen.append(record)
        return False

    log.addFilter(keep_none)
    try:
        with _sole_handler(logs.JsonFormatter()) as out:
            logs.log_fields(log, "request", {"status": 201})
    finally:
        log.removeFilter(keep_none)
    assert [r.__dict__["status"] for r in seen] == [201]
    assert out.getvalue() == ""


def test_log_fields_reaches_every_handler_when_there_are_several(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("mentorflow.test.captured")
    with caplog.at_level(logging.INFO):
        logs.log_fields(log, "request", {"status": 201})
    assert [(r.getMessage(), r.__dict__["status"]) for r in caplog.records] == [("request", 201)]


def test_log_fields_writes_nothing_below_the_loggers_level() -> None:
    log = logging.getLogger("mentorflow.test.quiet")
    log.setLevel(logging.WARNING)
    try:
        with _sole_handler(logs.JsonFormatter()) as out:
            logs.log_fields(log, "request", {"status": 201})
    finally:
        log.setLevel(logging.NOTSET)
    assert out.getvalue() == ""


def test_an_exception_is_the_last_field_of_a_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "mentorflow.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    record.__dict__["request_id"] = "r1"
    entry = json.loads(logs.JsonFormatter().format(record))
    assert (
        list(entry)[-2:] == ["request_id", "exception"] and "ValueError: boom" in entry["exception"]
    )
