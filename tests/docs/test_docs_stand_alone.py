"""docs/ stands on its own: its relative links resolve inside the repository
and nothing points outside it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs.examples import DOCS

ROOT = DOCS.parent
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*") if p.suffix in (".md", ".py"))


def test_relative_links_resolve() -> None:
    for page in DOCS.glob("*.md"):
        for target in _LINK.findall(page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).resolve().exists(), f"{page.name}: {target}"


OUTSIDE = ("../" + "shared", "/work/")
"""Paths of the workplace a clone does not have (spelt so this file is not one of them)."""


def test_nothing_points_outside_the_repository() -> None:
    for page in _pages():
        text = page.read_text()
        assert not any(path in text for path in OUTSIDE), page


def test_the_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name
    assert ROOT.joinpath("docs", "examples", "receiver.py").exists()
