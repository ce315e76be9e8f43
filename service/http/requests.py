"""Reading requests: JSON bodies, query parameters, path ids, If-Match.

Every malformed input becomes a precise 4xx here, before any handler logic.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from domain.schema import parse_datetime
from service.http.problems import Problem
from service.platform import fast_json
from service.platform.tasks import cancel_and_wait

MAX_BODY = 64 * 1024
MAX_INTEGER = 2**53  # beyond any version or position, and exact in JSON
MAX_DEPTH = 16
"""No request of the contract nests deeper than 5 levels."""
_BRACKETS_OUTSIDE_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_JSON_TYPES = ("application/json", "application/merge-patch+json")
_IF_MATCH = re.compile(r'^\s*(?:W/)?"(\d{1,18})"\s*$')


async def json_object(request: web.Request) -> tuple[dict[str, Any], bytes]:
    """The body as a JSON object, and its raw bytes (for idempotency)."""
    if request.content_type not in _JSON_TYPES:
        raise Problem(
            "unsupported-media-type",
            f"send the body as application/json, not {request.content_type or 'nothing'}",
        )
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    try:
        raw = await _body(request)
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large() from exc
    if len(raw) > MAX_BODY:
        raise _too_large()
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise Problem("malformed-request", "the body must be a JSON object")
    bad = unstorable_paths(body, raw)
    if bad:
        message = "text must be valid Unicode without NUL characters"
        raise Problem(
            "validation-error",
            f"{bad[0] or 'body'}: {message}",
            errors=[{"path": path, "message": message} for path in bad[:20]],
        )
    return body, raw


STOPPING = web.AppKey("stopping", asyncio.Event)
"""Set when the server starts to shut down (SIGTERM)."""


async def _body(request: web.Request) -> bytes:
    """The body, or a 503 if the server starts stopping while it still arrives.

    Once shutdown begins, aiohttp reads nothing more from open connections,
    so a body still on its way would never arrive, and its request would hold
    the process for the whole grace period and then get no answer at all.
    The usual body came with its headers and is read at once."""
    if request.content.is_eof():
        return await request.read()
    stopping = request.app[STOPPING]
    reading = asyncio.ensure_future(request.read())
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((reading, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(*(task for task in (reading, stopped) if not task.done()))
    if reading.done() and not reading.cancelled():
        return reading.result()
    raise Problem(
        "unavailable",
        "the service is stopping and this request's body had not all arrived; send it again",
        headers={"Connection": "close", "Retry-After": "1"},
    )


def parse_json(raw: bytes) -> Any:
    """Standard JSON only (no NaN or Infinity, which no JSON peer or PostgreSQL
    reads back), nested at most MAX_DEPTH deep, checked before the recursive
    parser could run out of stack.

    orjson reads what it can (fast_json; it refuses NaN, Infinity and
    out-of-range floats itself); a body it refuses, or one with an integer
    too long for it to keep exact, is read by the standard parser, whose
    answer and error messages are the contract's."""
    depth = nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise Problem(
            "malformed-request", f"the body nests {depth} levels deep; at most {MAX_DEPTH} are read"
        )
    try:
        return fast_json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem("malformed-request", f"the body is not valid JSON: {exc}") from exc


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in `raw`, brackets inside
    strings not counted. Cheap for ordinary bodies: it only scans when the
    body has more brackets than the limit allows levels."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    for token in _BRACKETS_OUTSIDE_STRINGS.finditer(raw):
        char = token[0]
        if char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond the range of a JSON number")
    return value


def unstorable_paths(body: Any, raw: bytes) -> list[str]:
    """Paths of the strings in `body` (parsed from `raw`) that PostgreSQL
    cannot store. Most bodies are not walked: without a ``\\u`` escape, a NUL
    byte or a 0xED byte, a body has none. Its strings are then the UTF-8 text
    it holds literally, with no NUL, and a surrogate in UTF-8 starts with 0xED
    (the standard parser, which reads what orjson refuses, lets one through).
    UTF-16 and UTF-32 bodies, which the standard parser also reads, always
    hold NUL bytes, so they are walked."""
    if b"\\u" not in raw and b"\x00" not in raw and b"\xed" not in raw:
        return []
    return list(_unstorable_text(body, ""))


def _unstorable_text(value: Any, path: str) -> Iterator[str]:
    """Paths of strings PostgreSQL cannot store: lone surrogates (which JSON's
    \\u escapes allow) and NUL characters."""
    if isinstance(value, str):
        if "\x00" in value or not _encodable(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in key or not _encodable(key):
                yield path or "body"
            else:
                yield from _unstorable_text(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable_text(item, f"{path}[{index}]")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_large() -> Problem:
    return Problem("payload-too-large", f"request bodies are limited to {MAX_BODY} bytes")


def path_uuid(request: web.Request, name: str, what: str) -> UUID:
    """An id from the path; one that is not a UUID names nothing, hence 404."""
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise Problem("not-found", f"no {what} {request.match_info[name]!r}") from None


def path_text(request: web.Request, name: str, what: str, *, max_length: int = 200) -> str:
    """A free-text id from the path (a mentee's id): one that cannot be an id
    (blank, too long, NUL, not encodable) names nothing, hence 404."""
    value = request.match_info[name]
    if not value.strip() or len(value) > max_length or "\x00" in value or not _encodable(value):
        raise Problem("not-found", f"no {what} with that id")
    return value


def query_int(
    request: web.Request,
    name: str,
    *,
    default: int | None = None,
    low: int = 0,
    high: int = MAX_INTEGER,
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid_query(name, "must be an integer") from None
    if not low <= value <= high:
        raise _invalid_query(name, f"must be between {low} and {high}")
    return value


def query_datetime(request: web.Request, name: str) -> datetime | None:
    """A date-time query parameter, held to the same rule as date-times in
    bodies (a time zone, and a UTC value in years 1-9999). A `+` in a query
    string arrives as a space when the client did not encode it."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_datetime(raw.replace(" ", "+"))
    except ValueError as exc:
        raise _invalid_query(name, str(exc)) from None


def query_text(request: web.Request, name: str, *, max_length: int = 200) -> str | None:
    """A free-text query parameter that PostgreSQL can compare (no NUL, no
    lone surrogates), or None when absent or empty."""
    value = request.query.get(name) or None
    if value is None:
        return None
    if len(value) > max_length or "\x00" in value or not _encodable(value):
        raise _invalid_query(
            name, f"must be text of at most {max_length} characters, without NUL characters"
        )
    return value


def query_choice(request: web.Request, name: str, choices: tuple[str, ...], default: str) -> str:
    value = request.query.get(name, default)
    if value not in choices:
        raise _invalid_query(name, f"must be one of {', '.join(choices)}")
    return value


def limit(request: web.Request) -> int:
    value = query_int(request, "limit", default=50, low=1, high=500)
    assert value is not None
    return value


def if_match(request: web.Request) -> int | None:
    """The version in `If-Match: "<version>"`, or None without the header or
    with `*` (RFC 9110: any current version, which every relationship has)."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    match = _IF_MATCH.match(raw)
    if match is None:
        raise Problem("malformed-request", 'If-Match must be a version in quotes, like "3", or *')
    return int(match[1])


def _invalid_query(name: str, message: str) -> Problem:
    return Problem.invalid(f"query.{name}", message, f"query parameter {name} {message}")
