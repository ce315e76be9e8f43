"""Imports point one way: service -> projections -> domain -> workflows; both are pure."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_EVERYWHERE = {
    "asyncpg",
    "aiohttp",
    "service",
    "projections",
    "psycopg",
    "socket",
    "requests",
}


def _imported_top_levels(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text())
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package", ["domain", "workflows"])
def test_pure_packages_import_no_io(package: str) -> None:
    for module, names in _imported_top_levels(package).items():
        assert not names & FORBIDDEN_EVERYWHERE, module


def test_workflows_does_not_know_the_domain() -> None:
    for module, names in _imported_top_levels("workflows").items():
        assert "domain" not in names, module
