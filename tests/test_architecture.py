"""The import layering of docs/architecture.md holds: no module cycles, and layers import downward only.

Every `import` in segcost/ counts, including those inside functions (a lazy import does not
make a cycle go away, it only hides it); imports under `if TYPE_CHECKING:` do not, since they
never run. The graph is read from the source with `ast`, so nothing is imported here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "segcost"

# Lowest first: a module may import its own layer and the layers before it, never one after.
# Keep in step with docs/architecture.md.
LAYERS: list[tuple[str, ...]] = [
    ("segcost", "segcost.errors", "segcost.fileio", "segcost.interrupt"),
    ("segcost.ir",),
    ("segcost.shapes",),
    ("segcost.frontends",),
    ("segcost.analyzer",),
    ("segcost.passes",),
    ("segcost.targets",),
    ("segcost.quant", "segcost.data", "segcost.samples"),
    ("segcost.pipeline", "segcost.budget", "segcost.zoo"),
    ("segcost.reports",),
    ("segcost.sweep",),
    ("segcost.api", "segcost.commands"),
    ("segcost.cli", "segcost.__main__"),
]
ROOT = "segcost"   # segcost/__init__.py: at the bottom (every import of segcost.x runs it first)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool):
    """Absolute names each import statement of `tree` reaches (skipping TYPE_CHECKING blocks)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> nx.DiGraph:
    """Module → module edges of segcost/ (one per import statement that reaches a segcost module)."""
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for module, path in files.items():
        tree = ast.parse(path.read_text())
        if module == ROOT:
            # The package's PEP 562 __getattr__ loads segcost.api on first attribute access, so that
            # `import segcost` stays light; only its module-level imports run on import.
            tree = ast.Module(body=[node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))],
                              type_ignores=[])
        for target in _imports(tree, module, path.name == "__init__.py"):
            while target and target not in files:  # `from pkg.mod import name` reaches pkg.mod
                target = target.rpartition(".")[0]
            if not target or target == module or not target.startswith("segcost"):
                continue
            graph.add_edge(module, target)
            # importing pkg.mod first runs pkg/__init__.py, unless the importer is inside pkg
            # (then pkg is already being imported)
            parent = target.rpartition(".")[0]
            while parent and not (module + ".").startswith(parent + "."):
                graph.add_edge(module, parent)
                parent = parent.rpartition(".")[0]
    return graph


def layer_of(module: str) -> int:
    if module == ROOT:
        return 0
    best, index = -1, None
    for position, layer in enumerate(LAYERS):
        for prefix in layer:
            if prefix == ROOT:
                continue
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), position
    assert index is not None, f"{module} belongs to no layer of docs/architecture.md"
    return index


def test_no_import_cycles():
    graph = import_graph()
    cycles = [sorted(component) for component in nx.strongly_connected_components(graph) if len(component) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_layers_import_downward_only():
    upward = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
              for a, b in import_graph().edges if layer_of(b) > layer_of(a)]
    assert not upward, "\n".join(upward)


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_the_check_can_fail():
    tree = ast.parse("from segcost.cli import main\nif TYPE_CHECKING:\n    import segcost.api\n")
    assert set(_imports(tree, "segcost.ir.graph", False)) == {"segcost.cli", "segcost.cli.main"}
