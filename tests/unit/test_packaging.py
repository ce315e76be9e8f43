"""The distribution holds every module and migration of the source tree.

An editable install (the README's commands) finds modules through the source
folder, so a package missing from ``pyproject.toml`` only shows in a plain
install, such as the Docker image's. This builds the wheel and compares.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("domain", "workflows", "projections", "service")


def source_files() -> set[str]:
    return {
        path.relative_to(REPO).as_posix()
        for top in TOP_LEVEL
        for pattern in ("*.py", "*.sql", "*.js")
        for path in (REPO / top).rglob(pattern)
        if "__pycache__" not in path.parts
    }


def test_the_wheel_holds_every_module_and_migration(tmp_path: Path) -> None:
    # Built from a copy: an in-tree build reuses build/, which can hide a gap.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for top in TOP_LEVEL:
        shutil.copytree(REPO / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mentorflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
    assert source_files() - packaged == set()
