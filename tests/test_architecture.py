"""The import graph keeps DESIGN.md's layout: dependencies flow one way,
supportbot → adapters, emulators → engine, and no project module imports itself round a cycle.

Every import counts, wherever it stands: at module level, under `if TYPE_CHECKING:`, inside a
function. A cycle that only type checking sees still ties the modules together for a reader and
for mypy, and today's lazy import is tomorrow's module-level one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "schema", "adapters", "emulators", "supportbot", "bench", "tests")
PRODUCTION = ("engine", "adapters", "supportbot")
# The one module of the bot's wiring that may reach the emulators: the demo modes.
DEMO_MODULE = "supportbot.demo"


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str  # the project module named, or the top-level name of an outside one
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _resolve(name: str, modules: Mapping[str, Path]) -> str:
    """The longest project module that `name` names or lies in (`a.b.C` → `a.b`); for an
    outside module, its top-level name."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return name.split(".")[0]


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):  # every import, at any depth
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, _resolve(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, path.name == "__init__.py")
            for alias in node.names:
                # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod.
                yield Import(module, _resolve(f"{source}.{alias.name}", modules), node.lineno)


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    modules = project_modules()
    return {name: [i for i in imports_of(name, path, modules) if i.imported != name] for name, path in modules.items()}


def _in(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _violations(graph: Mapping[str, list[Import]], importers: tuple[str, ...], forbidden: tuple[str, ...],
                exempt: frozenset[str] = frozenset()) -> list[str]:
    return sorted(
        f"{i.importer}:{i.line} imports {i.imported}"
        for name, found in graph.items()
        if _in(name, *importers) and name not in exempt
        for i in found
        if _in(i.imported, *forbidden)
    )


def test_the_engine_imports_no_adapter_emulator_or_wiring(graph: dict[str, list[Import]]) -> None:
    assert _violations(graph, ("engine",), ("adapters", "emulators", "supportbot", "bench", "tests")) == []


def test_adapters_import_neither_emulators_nor_wiring(graph: dict[str, list[Import]]) -> None:
    assert _violations(graph, ("adapters",), ("emulators", "supportbot", "bench", "tests")) == []


def test_emulators_are_reached_from_production_only_through_the_demo_module(
    graph: dict[str, list[Import]],
) -> None:
    assert _violations(graph, PRODUCTION, ("emulators",), exempt=frozenset({DEMO_MODULE})) == []


def test_emulators_import_neither_adapters_nor_wiring(graph: dict[str, list[Import]]) -> None:
    """A double stands beside what it stands in for: the adapters are tested against it."""
    assert _violations(graph, ("emulators",), ("adapters", "supportbot", "bench", "tests")) == []


def test_nothing_but_tests_imports_tests(graph: dict[str, list[Import]]) -> None:
    assert _violations(graph, ("engine", "schema", "adapters", "emulators", "supportbot", "bench"), ("tests",)) == []


def _runs(importer: str, imported: str) -> set[str]:
    """What importing `imported` executes: the module and each package above it (`a.b.c` runs
    `a/__init__` and `a/b/__init__` too), but for the importer's own packages, already running."""
    parts = imported.split(".")
    above = {".".join(parts[:n]) for n in range(1, len(parts))}
    own = {importer.rsplit(".", n)[0] for n in range(1, importer.count(".") + 1)}
    return {imported} | (above - own)


def cycles(graph: Mapping[str, list[Import]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    edges = {
        name: sorted({m for i in found for m in _runs(name, i.imported) if m in graph and m != name})
        for name, found in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycles_among_project_modules(graph: dict[str, list[Import]]) -> None:
    assert sorted(sorted(c) for c in cycles(graph)) == []


def test_the_checks_see_imports_under_type_checking_and_in_functions(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from adapters.vk import api\n"
        "def f() -> None:\n"
        "    import emulators.vk.server\n"
        "    from . import sibling\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    modules = {"engine.mod": path, "engine.sibling": path, "adapters.vk.api": path, "emulators.vk.server": path}
    found = sorted((i.line, i.imported) for i in imports_of("engine.mod", path, modules))
    assert found == [(1, "typing"), (3, "adapters.vk.api"), (5, "emulators.vk.server"), (6, "engine.sibling")]
