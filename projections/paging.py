"""Paged queries: ``limit`` (default 50, max 500) and an opaque ``cursor``.

A cursor is the last key of the previous page, base64url-encoded JSON, so a
client cannot mistake it for something to compute with, and a page boundary
never shifts when rows are added before it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR_LENGTH = 200
MAX_KEY = 2**53
"""Cursor keys are positions, versions or row ids: never negative, and never
beyond what a JSON number holds exactly (nor beyond PostgreSQL's bigint).
A list keyed otherwise (by UUID) passes its own ``maximum``."""


class InvalidQuery(ValueError):
    """A query parameter cannot be used; ``path`` names it (for a 422 body)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class PageRequest:
    """Where a page starts (``after``, a decoded cursor) and how long it is."""

    limit: int = DEFAULT_LIMIT
    after: int | None = None


def page_request(limit: int | None, cursor: str | None, *, kind: str) -> PageRequest:
    """Validate ``limit`` and decode ``cursor`` (made by :func:`encode_cursor`
    for the same ``kind`` of list). Raises :class:`InvalidQuery`."""
    if limit is None:
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery("limit", f"must be between 1 and {MAX_LIMIT}")
    return PageRequest(limit, None if cursor is None else decode_cursor(cursor, kind=kind))


def encode_cursor(after: int, *, kind: str) -> str:
    raw = json.dumps({"k": kind, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, kind: str, maximum: int = MAX_KEY) -> int:
    if len(cursor) > MAX_CURSOR_LENGTH:  # ours are short; a long one is forged
        raise InvalidQuery("cursor", "not a cursor returned by this list")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        body: Any = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise InvalidQuery("cursor", "not a cursor returned by this list") from exc
    if not isinstance(body, dict) or body.get("k") != kind or type(body.get("a")) is not int:
        raise InvalidQuery("cursor", "not a cursor returned by this list")
    after: int = body["a"]
    if not 0 <= after <= maximum:
        raise InvalidQuery("cursor", "not a cursor returned by this list")
    return after


def one_page(
    rows: Sequence[T], size: int, *, kind: str, key: Callable[[T], int]
) -> tuple[Sequence[T], str | None]:
    """A page of a list and its ``next_cursor``. ``rows`` was fetched with one
    more than ``size``: the extra row only says that a next page exists, so an
    exactly full last page gets no cursor (a client would follow it into an
    empty page)."""
    if len(rows) <= size:
        return rows, None
    kept = rows[:size]
    return kept, encode_cursor(key(kept[-1]), kind=kind)


def next_cursor(keys: list[int], request: PageRequest, *, kind: str) -> str | None:
    """The cursor after a page whose query fetched ``limit + 1`` keys."""
    return one_page(keys, request.limit, kind=kind, key=int)[1]
