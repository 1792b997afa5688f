"""The package's modules import one another without a cycle.

The graph has an edge from module A to module B when A's code imports B: ``import pkg.b``,
``from pkg import b``, ``from .b import name``, ``from . import b``, ``from .. import name``
(an edge to the package ``__init__`` that defines ``name``). An import inside a function counts
too: deferring an import only postpones the cycle to the first call. Imports under
``if TYPE_CHECKING:`` do not count, since they never run.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import mongo_job_scheduler

PACKAGE = "mongo_job_scheduler"
PACKAGE_DIR = Path(mongo_job_scheduler.__file__).parent

Graph = dict[str, set[str]]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module below ``root`` (the directory of ``package``) by dotted name."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_statements(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.orelse:
                yield from _import_statements(ast.Module(body=[statement], type_ignores=[]))
        else:
            yield from _import_statements(child)


def _imported(
    statement: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: set[str]
) -> set[str]:
    """The modules of ``modules`` that ``statement`` (in module ``importer``) imports."""
    if isinstance(statement, ast.Import):
        return {alias.name for alias in statement.names if alias.name in modules}
    if statement.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (statement.level - 1)]
        source = ".".join([*base, statement.module] if statement.module else base)
    else:
        source = statement.module or ""
    found: set[str] = set()
    for alias in statement.names:
        submodule = f"{source}.{alias.name}"
        if submodule in modules:
            found.add(submodule)
        elif source in modules:
            found.add(source)
    return found


def import_graph(root: Path, package: str) -> Graph:
    """For every module of ``package``, the other modules of it that its code imports."""
    files = module_files(root, package)
    graph: Graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for statement in _import_statements(tree):
            edges |= _imported(statement, name, path.name == "__init__.py", set(files))
        graph[name] = edges - {name}
    return graph


def _components(graph: Graph) -> list[list[str]]:
    """The strongly connected components of ``graph`` (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _cycle_through(start: str, members: set[str], graph: Graph) -> list[str]:
    """A shortest import path from ``start`` back to itself inside one component."""
    paths = {target: [start, target] for target in graph[start] if target in members}
    while start not in paths:
        paths = {
            target: [*path, target]
            for node, path in sorted(paths.items())
            for target in sorted(graph[node])
            if target in members and target not in paths
        } | paths
    return paths[start]


def import_cycles(graph: Graph) -> list[list[str]]:
    """One cycle for each group of modules that import one another, as import paths."""
    return [
        _cycle_through(component[0], set(component), graph)
        for component in _components(graph)
        if len(component) > 1
    ]


def test_the_package_has_no_import_cycle() -> None:
    cycles = import_cycles(import_graph(PACKAGE_DIR, PACKAGE))

    assert not cycles, "import cycles in the package:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_the_graph_sees_every_module_and_its_relative_imports() -> None:
    graph = import_graph(PACKAGE_DIR, PACKAGE)

    assert f"{PACKAGE}.scheduler" in graph[PACKAGE]  # from .scheduler import Scheduler
    assert f"{PACKAGE}.dashboard._app" in graph[f"{PACKAGE}.dashboard"]
    assert f"{PACKAGE}.scheduler" in graph[f"{PACKAGE}.dashboard._app"]  # from ..scheduler


def _write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return package


def test_a_cycle_through_a_deferred_import_is_found(tmp_path: Path) -> None:
    package = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "cli.py": """
                def demo():
                    from .demo import run_demo
                    return run_demo()
            """,
            "demo.py": "from .cli import CliError\n",
        },
    )

    assert import_cycles(import_graph(package, "pkg")) == [["pkg.cli", "pkg.demo", "pkg.cli"]]


def test_a_cycle_through_packages_and_parents_is_found(tmp_path: Path) -> None:
    package = _write_package(
        tmp_path,
        {
            "__init__.py": "from .a import thing\n",
            "a.py": "from .sub import b\nthing = 1\n",
            "sub/__init__.py": "",
            "sub/b.py": "from .. import thing\n",
        },
    )

    assert import_cycles(import_graph(package, "pkg")) == [["pkg", "pkg.a", "pkg.sub.b", "pkg"]]


def test_imports_for_type_checking_only_make_no_cycle(tmp_path: Path) -> None:
    package = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import pkg.b\n",
            "b.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from .a import A
                else:
                    import json
            """,
        },
    )

    assert import_graph(package, "pkg") == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": set()}
    assert import_cycles(import_graph(package, "pkg")) == []
