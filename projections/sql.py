"""Small SQL helpers shared by the read models."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

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


def insert_rows(table: str, columns: Sequence[str]) -> str:
    """SQL: insert the rows of one JSON array parameter (:func:`json_rows`),
    which PostgreSQL turns into rows of the table's own type. A batch goes as
    one text written by orjson instead of an array per column encoded value by
    value by the driver: that moves most of a row's cost off the service's one
    Python thread, into the database (bench/projections.py, docs/performance.md)."""
    names = ", ".join(columns)
    return (
        f"INSERT INTO {table} ({names}) SELECT {names}"  # noqa: S608 - constants only
        f" FROM jsonb_populate_recordset(NULL::{table}, $1::text::jsonb)"
    )


def json_rows(rows: Sequence[Any], instants: Sequence[str]) -> str:
    """Dataclass rows as the JSON array :func:`insert_rows` reads, each of
    their ``instants`` (field names) in UTC: orjson writes an instant with its
    own offset, and PostgreSQL refuses offsets beyond 15:59, which ISO 8601
    and Python allow. Instants read from the database or the log are in UTC
    already; only values taken from a request as sent are converted (the same
    instants)."""
    return orjson.dumps([_in_utc(row, instants) for row in rows], default=_uuid_text).decode()


def _in_utc(row: Any, instants: Sequence[str]) -> Any:
    changes = {
        name: value.astimezone(UTC)
        for name in instants
        if (value := getattr(row, name)) is not None and value.tzinfo is not UTC
    }
    return dataclasses.replace(row, **changes) if changes else row


def _uuid_text(value: object) -> str:
    """The driver's own UUID class (ids read from the log), which orjson does
    not take for the standard one it derives from."""
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")
