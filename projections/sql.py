"""Small SQL helpers shared by the read models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """Quote a table name for the few statements that cannot take it as a
    parameter (TRUNCATE); only plain lower-case identifiers are accepted."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


LAST_INSTANT = "'9999-12-31 23:59:59.999999+00'::timestamptz"
"""The last instant a Python datetime can hold (in UTC)."""


def aware(value: Any) -> Any:
    """A timestamptz value as read, with its time zone.

    asyncpg writes the first and last instants Python can hold
    (0001-01-01T00:00:00Z, 9999-12-31T23:59:59.999999Z) as PostgreSQL's
    -infinity and infinity, and reads those back as the *naive*
    ``datetime.min`` and ``datetime.max``; a naive value cannot be compared
    with, or subtracted from, the aware ones every event carries. They are
    those UTC instants: say so."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def finite_epoch(column: str) -> str:
    """SQL: the epoch seconds of a timestamptz column, reading the infinities
    asyncpg wrote as the instants they stand for (see :func:`aware`), so that
    differences never meet PostgreSQL's "cannot subtract infinite timestamps"."""
    return (
        f"(CASE WHEN {column} = 'infinity' THEN 253402300799.999999"
        f" WHEN {column} = '-infinity' THEN -62135596800"
        f" ELSE extract(epoch FROM {column}) END)::double precision"
    )


def capped(expression: str) -> str:
    """SQL: a timestamptz computed by adding to a stored one, as infinity when
    it passes the last instant Python can read (a cadence added to a meeting
    held on 9999-12-31 is never due, and must not fail the whole query)."""
    return (
        f"(CASE WHEN {expression} > {LAST_INSTANT} THEN 'infinity'::timestamptz"
        f" ELSE {expression} END)"
    )
