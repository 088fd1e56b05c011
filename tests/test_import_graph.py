"""The project's modules import each other without cycles, and only through public names.

Every module of ``messenger/``, ``actors/``, ``handlers/``, ``config/`` and the Python scripts in
``scripts/`` is parsed (not imported) with ``ast``. An edge goes from a module to every project
module it imports: at module level and inside functions alike (a function-local import only
postpones a cycle to run time). ``from package import name`` is an edge to the submodule
``package.name`` when that is one, else to ``package`` itself.

Imports inside ``if TYPE_CHECKING:`` are never executed, so they are left out of the run-time
graph; a second check adds them, because a module that names another's type only for its
annotations still depends on it (an actor typed against the hub that spawns it is the cycle the
ports in ``actors/ports.py`` cut).

Failures are listed whole: every cycle (a strongly connected component of more than one module,
or a module that imports itself) with the import lines that make it, and every use of another
project module's private name (``from m import _x``, or ``m._x`` through an imported module).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("messenger", "actors", "handlers", "config")
SCRIPTS = "scripts"


@dataclass(frozen=True, slots=True)
class Edge:
    importer: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.target} (line {self.line})"


@dataclass(frozen=True, slots=True)
class PrivateUse:
    importer: str
    owner: str
    name: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} line {self.line} uses {self.owner}.{self.name}"


@dataclass(frozen=True, slots=True)
class SourceModule:
    name: str
    path: Path
    is_package: bool


def project_modules(root: Path = ROOT) -> dict[str, SourceModule]:
    """Module name -> source, for every module of the project's packages and Python scripts."""
    modules: dict[str, SourceModule] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join(parts)
            modules[name] = SourceModule(name, path, is_package)
    for path in sorted((root / SCRIPTS).iterdir()):
        if path.is_file() and _is_python_script(path):
            name = f"{SCRIPTS}.{path.stem.replace('-', '_')}"
            modules[name] = SourceModule(name, path, False)
    return modules


def _is_python_script(path: Path) -> bool:
    if path.suffix == ".py":
        return True
    with path.open("rb") as file:
        first_line = file.readline()
    return first_line.startswith(b"#!") and b"python" in first_line


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class ImportCollector(ast.NodeVisitor):
    """Edges and private-name uses of one module."""

    def __init__(self, module: SourceModule, known: dict[str, SourceModule], *,
                 type_checking: bool = False) -> None:
        self.module = module
        self.known = known
        self.type_checking = type_checking  # also follow imports under ``if TYPE_CHECKING:``
        self.edges: list[Edge] = []
        self.private: list[PrivateUse] = []
        #: local names bound to a project module (``import a.b as m``, ``from a import b``)
        self.module_aliases: dict[str, str] = {}

    def _package(self) -> str:
        if self.module.is_package:
            return self.module.name
        return self.module.name.rpartition(".")[0]

    def _resolve_relative(self, level: int, name: str | None) -> str:
        base = self._package().split(".")
        if level > 1:
            base = base[: len(base) - (level - 1)]
        return ".".join([*base, name] if name else base)

    def _longest_known_prefix(self, dotted: str) -> str | None:
        parts = dotted.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in self.known:
                return candidate
            parts.pop()
        return None

    def _edge(self, target: str, node: ast.stmt) -> None:
        self.edges.append(Edge(self.module.name, target, node.lineno))

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test) and not self.type_checking:
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            target = self._longest_known_prefix(alias.name)
            if target is None:
                continue
            self._edge(target, node)
            if alias.asname is not None and target == alias.name:
                self.module_aliases[alias.asname] = target

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._resolve_relative(node.level, node.module) if node.level else node.module or ""
        owner = self._longest_known_prefix(base)
        if owner is None:
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if owner == base and submodule in self.known:
                self._edge(submodule, node)
                self.module_aliases[alias.asname or alias.name] = submodule
                continue
            self._edge(owner, node)
            if _is_private(alias.name) and owner != self.module.name:
                self.private.append(PrivateUse(self.module.name, owner, alias.name, node.lineno))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and _is_private(node.attr):
            owner = self.module_aliases.get(node.value.id)
            if owner is not None and owner != self.module.name:
                self.private.append(PrivateUse(self.module.name, owner, node.attr, node.lineno))
        self.generic_visit(node)


def collect(modules: dict[str, SourceModule], *,
            type_checking: bool = False) -> tuple[list[Edge], list[PrivateUse]]:
    edges: list[Edge] = []
    private: list[PrivateUse] = []
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        collector = ImportCollector(module, modules, type_checking=type_checking)
        collector.visit(tree)
        edges.extend(collector.edges)
        private.extend(collector.private)
    return edges, private


def strongly_connected(nodes: list[str], graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Tarjan's algorithm, iterative: each component once, its members sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(sorted(graph.get(start, ())))))
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                yield sorted(component)


def find_cycles(edges: list[Edge]) -> list[tuple[list[str], list[Edge]]]:
    """Each cycle: its modules and the import lines between them."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.target)
    nodes = sorted(set(graph) | {e.target for e in edges})
    cycles = []
    for component in strongly_connected(nodes, graph):
        members = set(component)
        inside = sorted({e for e in edges if e.importer in members and e.target in members},
                        key=lambda e: (e.importer, e.target, e.line))
        if len(component) > 1 or inside:  # ``inside`` of a single module: it imports itself
            cycles.append((component, inside))
    return cycles


def describe_cycles(cycles: list[tuple[list[str], list[Edge]]], counted: str = "") -> str:
    lines = [f"{len(cycles)} import cycle(s) between the project's modules{counted}:"]
    for component, inside in cycles:
        lines.append("  cycle: " + ", ".join(component))
        lines.extend(f"    {edge}" for edge in inside)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def graph() -> tuple[list[Edge], list[PrivateUse]]:
    return collect(project_modules())


def test_the_collector_sees_the_project(graph: tuple[list[Edge], list[PrivateUse]]) -> None:
    modules = project_modules()
    assert {"messenger.app", "actors.runtime", "handlers.routes", "config.settings",
            "scripts.gen_openapi"} <= set(modules)
    edges, _ = graph
    targets = {(e.importer, e.target) for e in edges}
    assert ("messenger.services", "messenger.store") in targets  # from package import name
    assert ("actors.chat", "messenger.realtime.frames") in targets  # from package import submodule


def describe_private(private: list[PrivateUse]) -> str:
    lines_of: dict[tuple[str, str], list[int]] = {}
    for use in private:
        lines_of.setdefault((use.importer, f"{use.owner}.{use.name}"), []).append(use.line)
    listed = [f"  {importer} uses {name} (line {', '.join(map(str, sorted(lines)))})"
              for (importer, name), lines in sorted(lines_of.items())]
    return "\n".join([f"{len(lines_of)} private name(s) used across project modules "
                      "(make them public in a module both import):", *listed])


def test_no_import_cycles(graph: tuple[list[Edge], list[PrivateUse]]) -> None:
    edges, _ = graph
    cycles = find_cycles(edges)
    assert not cycles, describe_cycles(cycles)


def test_no_cycles_through_type_checking_imports() -> None:
    edges, _ = collect(project_modules(), type_checking=True)
    cycles = find_cycles(edges)
    assert not cycles, describe_cycles(cycles, " (TYPE_CHECKING imports counted)")


def test_no_private_names_of_other_modules(graph: tuple[list[Edge], list[PrivateUse]]) -> None:
    _, private = graph
    assert not private, describe_private(private)


# -- the checker itself, on small trees it must judge right ---------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, SourceModule]:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / SCRIPTS).mkdir()
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return project_modules(tmp_path)


def test_a_function_local_import_cycle_is_found(tmp_path: Path) -> None:
    modules = _tree(tmp_path, {
        "messenger/a.py": "from messenger.b import thing\n",
        "messenger/b.py": "def f():\n    from messenger import a\n    return a\n",
    })
    edges, _ = collect(modules)
    cycles = find_cycles(edges)
    assert [component for component, _ in cycles] == [["messenger.a", "messenger.b"]]
    assert "messenger.b -> messenger.a (line 2)" in describe_cycles(cycles)


def test_type_checking_imports_and_else_branches(tmp_path: Path) -> None:
    modules = _tree(tmp_path, {
        "actors/a.py": "from actors.b import B\n",
        "actors/b.py": ("from typing import TYPE_CHECKING\n"
                        "if TYPE_CHECKING:\n    from actors.a import A\n"
                        "else:\n    from actors import c\n"),
        "actors/c.py": "import actors.b as b\n",
    })
    edges, _ = collect(modules)
    assert [component for component, _ in find_cycles(edges)] == [["actors.b", "actors.c"]]
    edges, _ = collect(modules, type_checking=True)
    assert [component for component, _ in find_cycles(edges)] == [
        ["actors.a", "actors.b", "actors.c"]]


def test_relative_and_self_imports(tmp_path: Path) -> None:
    modules = _tree(tmp_path, {
        "messenger/store/__init__.py": "from .base import Store\n",
        "messenger/store/base.py": "from . import base\n",
    })
    edges, _ = collect(modules)
    assert ("messenger.store", "messenger.store.base") in {(e.importer, e.target) for e in edges}
    assert [component for component, _ in find_cycles(edges)] == [["messenger.store.base"]]


def test_private_names_by_import_and_by_attribute(tmp_path: Path) -> None:
    modules = _tree(tmp_path, {
        "messenger/spec.py": "_helper = 1\nPUBLIC = 2\n",
        "messenger/spec_more.py": ("from messenger import spec as base\n"
                                   "from messenger.spec import _helper, PUBLIC\n"
                                   "x = base._helper + base.PUBLIC + base.__name__.count('')\n"),
        "scripts/tool": "#!/usr/bin/env python3\nimport messenger.spec\n",
    })
    edges, private = collect(modules)
    assert sorted(str(use) for use in private) == [
        "messenger.spec_more line 2 uses messenger.spec._helper",
        "messenger.spec_more line 3 uses messenger.spec._helper",
    ]
    assert "messenger.spec_more uses messenger.spec._helper (line 2, 3)" in describe_private(
        private)
    assert ("scripts.tool", "messenger.spec") in {(e.importer, e.target) for e in edges}
