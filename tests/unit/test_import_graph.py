"""No import cycle in ``app/`` and ``workers/``, counting imports inside functions too.

A cycle held together by a function-level import works until someone moves that import to the top
of the file; the graph is built from the source with ``ast`` and sorted with ``graphlib``, which
names the cycle it finds.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "workers")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports (``from pkg import name`` counts ``pkg``, whose
    ``__init__`` runs first, and ``pkg.name`` when that is a module)."""
    is_package = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names += [target, *(f"{target}.{alias.name}" for alias in node.names)]
    edges = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            edges.add(name)
    return edges


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {module: _imported(module, path, known) for module, path in known.items()}


def test_import_graph_sees_the_project():
    graph = import_graph()
    assert "app.dsr.services" in graph
    assert "workers.jobs" in graph
    assert "app" in graph["workers.context"]  # the workers build the app: the one allowed direction


def test_import_graph_has_no_cycle():
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_the_app_never_imports_the_workers():
    graph = import_graph()
    offenders = sorted(
        m for m, deps in graph.items() if m.split(".")[0] == "app" for d in deps if d.startswith("workers")
    )
    assert offenders == []


def test_the_workers_never_reach_into_the_admin_web_layer():
    """Staff accounts are ``app.staff``: the workers use it, never the admin blueprint's modules."""
    graph = import_graph()
    offenders = sorted(
        f"{m} -> {d}" for m, deps in graph.items() if m.startswith("workers") for d in deps if d.startswith("app.admin")
    )
    assert offenders == []


def test_admin_views_reach_platform_data_only_through_the_sources():
    graph = import_graph()
    offenders = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m.startswith("app.admin")
        for d in deps
        if d.startswith("app.platform")
    )
    assert offenders == []
