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


# --- the whole import graph: layers, cycles, sizes -------------------------------------------

LAYERS = ("workflows", "domain", "projections", "service")
"""Lowest first: a package may import only those before it (and itself)."""
LONG_MODULES = {
    "domain/relationship.py": (
        "the aggregate with its event classes nested in it, as eventsourcing's declarative"
        " style has them (Relationship.MeetingHeld...): each event's fields sit next to how it"
        " evolves the state, and splitting the classes out would scatter the two"
    ),
}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, function-local imports included."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                found = resolve(target)
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_a_higher_layer() -> None:
    rank = {package: level for level, package in enumerate(LAYERS)}
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if rank[target.split(".")[0]] > rank[module.split(".")[0]]
    ]
    assert upward == []


def test_no_cycle_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_no_cycle_between_folders() -> None:
    modules = _modules()
    folders: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        source = str(modules[module].parent.relative_to(ROOT))
        folders.setdefault(source, set())
        for target in targets:
            folder = str(modules[target].parent.relative_to(ROOT))
            if folder != source:
                folders[source].add(folder)
    assert _cycles(folders) == []


def test_no_production_module_is_long_without_a_reason() -> None:
    long = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in _modules().values()
    }
    too_long = {p: n for p, n in long.items() if n > MAX_LINES and p not in LONG_MODULES}
    assert too_long == {}
