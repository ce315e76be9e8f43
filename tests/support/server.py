"""The real service as a separate process, on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.database import drop_schema_sync, new_schema_name

ADMIN_TOKEN = "e2e-admin-token-not-a-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """`mentorflow serve` in a child process against a schema of the test's own."""

    def __init__(self, dsn: str, schema: str, **env: str):
        self.dsn = dsn
        self.python_args: tuple[str, ...] = ()
        """Arguments for Python before ``-m service.cli`` (a profiler's, for example)."""
        self.schema = schema
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._extra_env = env
        self._log_path = Path(tempfile.mkdtemp(prefix="mentorflow-e2e-")) / "server.log"
        self._log = self._log_path.open("wb")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.dsn,
            "MENTORFLOW_DB_SCHEMA": self.schema,
            "MENTORFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
            # the service records risk.* on its own as time passes: only the tests
            # about it turn the risk worker on, so the others see their own events only
            "MENTORFLOW_RISK_WORKER": "0",
            **self._extra_env,
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                *self.python_args,
                "-m",
                "service.cli",
                "serve",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for a clean exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def logs(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")

    def close(self) -> None:
        self.kill()
        self._log.close()


@contextmanager
def running_server(dsn: str, **env: str) -> Iterator[ServerProcess]:
    """A started server on a schema of its own, stopped and cleaned up after."""
    process = ServerProcess(dsn, new_schema_name("e2e"), **env)
    process.start()
    try:
        yield process
    finally:
        process.close()
        drop_schema_sync(dsn, process.schema)
