"""The shape the request path promises: imports flow one way, and modules stay readable.

Every import counts, including ``if TYPE_CHECKING:`` blocks and imports inside functions: a
module the composition root imports must never import it back, not even for a type.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["edge_agent", "shared", "cloud_hub"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules that ``path`` imports (``from a import b`` counts a.b when it is a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known}


def _cycles_within(prefix: str) -> list[list[str]]:
    known = _modules()
    graph = {
        name: {m for m in _imports(path, known) if m.startswith(prefix) and m != name}
        for name, path in known.items()
        if name.startswith(prefix)
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


@pytest.mark.parametrize("package", ["edge_agent.api", "edge_agent", "shared.plugins", "cloud_hub"])
def test_no_import_cycles(package: str) -> None:
    # A package's __init__ re-exporting its modules is not a cycle of the request path.
    cycles = [c for c in _cycles_within(package) if package not in c]
    assert cycles == [], f"import cycles in {package}: {cycles}"


def test_nothing_the_composition_root_builds_on_imports_it_back() -> None:
    known = _modules()
    layers = ("edge_agent.api.", "edge_agent.execute", "edge_agent.router", "edge_agent.uplink")
    importers = [
        name
        for name, path in known.items()
        if name.startswith(layers)
        and name != "edge_agent.api.app"
        and "edge_agent.api.app" in _imports(path, known)
    ]
    assert importers == []


@pytest.mark.parametrize("package", ["edge_agent/api", "edge_agent/execute", "cloud_hub"])
def test_request_path_modules_stay_small(package: str) -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / package).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 260
    }
    assert long == {}, f"split these modules (about 250 lines at most): {long}"
