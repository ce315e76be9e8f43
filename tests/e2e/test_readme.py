"""The README's "Using it" block runs as written, on the embedded database of
a fresh data directory, as a new user's first hour would (only the port and
the path of the virtual environment are this machine's)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import free_port

pytestmark = pytest.mark.db
ROOT = Path(__file__).resolve().parents[2]


def using_it_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using it") :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's 'Using it' section has no sh block"
    return match.group(1)


def test_the_using_it_block_runs_as_written(tmp_path: Path) -> None:
    port = str(free_port())
    bin_dir = str(Path(sys.executable).parent) + "/"
    script = using_it_block().replace("localhost:8080", f"localhost:{port}")
    script = script.replace(".venv/bin/", bin_dir)
    script = script.replace("mentorflow serve &", f"mentorflow serve --port {port} &")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MENTORFLOW_DB_SCHEMA")}
    env |= {"MENTORFLOW_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script + "\nwait $! || true\n"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    relationship = _json_documents(result.stdout)[-1]  # curl ends no line: they run together
    assert relationship["version"] == 2 and relationship["phase"] == "reflection"
    assert "identification.started" in relationship["allowed_events"]


def _json_documents(text: str) -> list[Any]:
    decoder, found, at = json.JSONDecoder(), [], text.find("{")
    while at != -1:
        document, end = decoder.raw_decode(text, at)
        found.append(document)
        at = text.find("{", end)
    return found
