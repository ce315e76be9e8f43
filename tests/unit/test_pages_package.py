"""Every file the pages serve or render is package data, so a plain
(non-editable) install, as in the Dockerfile, serves the same pages."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

from service.pages.routes import STATIC_DIR, STATIC_FILES

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "service" / "pages"


def test_templates_and_static_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["service.pages"]
    files = [p for folder in ("templates", "static") for p in (PAGES / folder).iterdir()]
    assert files
    missing = [
        str(p.relative_to(PAGES))
        for p in files
        if not any(fnmatch(str(p.relative_to(PAGES)), pattern) for pattern in patterns)
    ]
    assert missing == []


def test_every_served_static_file_exists() -> None:
    assert sorted(STATIC_FILES) == sorted(p.name for p in STATIC_DIR.iterdir())
