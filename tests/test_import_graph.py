"""The import graph of ``kappa``, ``kappa_batch`` and ``kappa_online``: no cycle between modules
(imports inside functions count: they only hide a cycle), and nothing imports against the
direction ``kappa_online -> kappa_batch -> kappa`` (``TYPE_CHECKING`` imports included)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kappa", "kappa_online", "kappa_batch", "kappa_gamma")  # kappa_online may import all but Gamma
LAYER = {"kappa_online": 2, "kappa_batch": 1, "kappa_gamma": 1, "kappa": 0}


@functools.cache
def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest module of ours that an import of ``name`` loads."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def _all_edges() -> dict[str, set[tuple[str, bool]]]:
    """The edges of the whole repository, parsed once for every test."""
    return _edges(_modules())


def _edges(modules: dict[str, Path]) -> dict[str, set[tuple[str, bool]]]:
    """module -> {(imported module, typing only)}."""
    edges: dict[str, set[tuple[str, bool]]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        typing_only = _type_checking_lines(tree)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = edges.setdefault(module, set())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from package import module` loads that module
                names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for name in names:
                target = _target(name, modules)
                if target is not None and target != module:
                    found.add((target, node.lineno in typing_only))
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _runtime_graph() -> dict[str, set[str]]:
    edges = _all_edges()
    graph = {m: {t for t, typing in targets if not typing} for m, targets in edges.items()}
    for module in graph:  # a package's __init__ runs before its modules: not a dependency of theirs
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    return graph


def test_the_checker_finds_a_cycle_and_an_upward_import() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    edges = _all_edges()
    assert ("kappa.errors", False) in edges["kappa_batch.runner"]  # it reads real imports


def test_no_import_cycles() -> None:
    cycles = _cycles(_runtime_graph())
    assert cycles == [], "import cycles (break them, do not hide them in functions):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_imports_follow_the_layers() -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in _all_edges().items()
        for target, _ in targets
        if LAYER[target.split(".")[0]] > LAYER[module.split(".")[0]]
    )
    assert upward == []


def test_the_registry_server_imports_kappa_only_and_nothing_imports_it() -> None:
    """Gamma is its own package over the SDK (ARCHITECTURE.md): clients never load the server."""
    edges = _all_edges()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in edges.items()
        for target, _ in targets
        if (module.startswith("kappa_gamma") and target.split(".")[0] not in ("kappa", "kappa_gamma"))
        or (target.startswith("kappa_gamma") and not module.startswith("kappa_gamma"))
    )
    assert wrong == []
