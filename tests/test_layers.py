"""The package tree is the architecture: every import in gatectl/ goes down the documented floors
(docs/architecture.md, "Floors"), and no modules import each other in a circle.

Walks the source with `ast` (imports inside functions and under TYPE_CHECKING count too: a lazy
import is still a dependency), so it needs no model, no broker and imports nothing of gatectl.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gatectl"

# Lowest first. A module may import its own floor and the floors below it, never above.
FLOORS = ["domain", "core", "config", "store", "sources", "vision", "hw", "control", "people",
          "access", "analysis", "gates", "sync", "web", "runtime", "central", "cli"]
ROOT_MODULES = {"gatectl": "core", "gatectl.__main__": "cli"}  # the package itself: version, entry point


def floor_of(module: str) -> str:
    if module in ROOT_MODULES:
        return ROOT_MODULES[module]
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in FLOORS:
        raise AssertionError(f"{module}: not in any floor (add its folder to FLOORS and docs/architecture.md)")
    return parts[1]


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, gatectl module) for every import in the file; ``from pkg import name`` counts as
    the submodule when ``pkg.name`` is one."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "gatectl"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "gatectl":
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            out += [(node.lineno, s) for s in subs] or [(node.lineno, target)]
    return out


def import_graph(root: Path) -> dict[str, list[tuple[int, str]]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    return {m: imports_of(p, m, known) for m, p in files.items()}


def upward_imports(graph: dict[str, list[tuple[int, str]]]) -> list[str]:
    bad = []
    for module, deps in graph.items():
        mine = FLOORS.index(floor_of(module))
        for line, dep in deps:
            if FLOORS.index(floor_of(dep)) > mine:
                bad.append(f"{module}:{line} imports {dep} ({floor_of(module)} -> {floor_of(dep)}, upward)")
    return bad


def cycles(graph: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Every import cycle between modules (one per back edge of a depth-first walk)."""
    edges = {m: sorted({d for _, d in deps if d in graph and d != m}) for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in edges[m]:
            if state.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m)
    return found


def test_no_import_goes_up_a_floor():
    assert upward_imports(import_graph(PKG)) == []


def test_no_import_cycle():
    assert cycles(import_graph(PKG)) == []


def test_domain_imports_nothing_of_gatectl_but_itself():
    graph = import_graph(PKG)
    assert [f"{m} imports {d}" for m, deps in graph.items() if floor_of(m) == "domain"
            for _, d in deps if floor_of(d) != "domain"] == []


def test_every_floor_is_a_folder_and_every_folder_a_floor():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(FLOORS)
    assert sorted(p.name for p in PKG.glob("*.py")) == ["__init__.py", "__main__.py"]


@pytest.fixture
def fake_tree(tmp_path: Path) -> Path:
    """A copy of the floors' skeleton where the checks must fail."""
    root = tmp_path / "gatectl"
    for floor in FLOORS:
        (root / floor).mkdir(parents=True)
        (root / floor / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    return root


def test_the_checks_can_fail(fake_tree: Path):
    # a store module reaching up into vision (the old store -> vision.gallery), and a cycle
    (fake_tree / "store" / "db.py").write_text("from gatectl.vision import gallery\n")
    (fake_tree / "vision" / "gallery.py").write_text("")
    (fake_tree / "sync" / "a.py").write_text("def f():\n    from gatectl.sync.b import g\n")
    (fake_tree / "sync" / "b.py").write_text("from gatectl.sync import a\n")
    graph = import_graph(fake_tree)
    assert upward_imports(graph) == [
        "gatectl.store.db:1 imports gatectl.vision.gallery (store -> vision, upward)"]
    assert cycles(graph) == [["gatectl.sync.a", "gatectl.sync.b", "gatectl.sync.a"]]
    (fake_tree / "domain" / "rules.py").write_text("from gatectl.core import errors\n")
    (fake_tree / "core" / "errors.py").write_text("")
    assert upward_imports(import_graph(fake_tree)) == [
        "gatectl.domain.rules:1 imports gatectl.core.errors (domain -> core, upward)",
        "gatectl.store.db:1 imports gatectl.vision.gallery (store -> vision, upward)"]


def test_no_assert_guards_a_runtime_invariant():
    """``python -O`` drops asserts: an invariant in gatectl/ is an `if` that raises."""
    found = [f"{p.relative_to(PKG.parent)}:{n.lineno}" for p in sorted(PKG.rglob("*.py"))
             for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))) if isinstance(n, ast.Assert)]
    assert found == []
