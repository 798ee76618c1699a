"""`segcost analyze` does only the work it needs: no networkx, and an IR whose DiGraph is built on demand.

The IR's networkx.DiGraph (`Graph.dag`) is built from the node and producer/consumer tables the
first time a pass asks for it; these tests check that a graph mutated before and after that
point ends up with the same DiGraph, and that the analyze command never loads networkx.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from segcost.errors import GraphError
from segcost.ir import Graph, Node, verify_graph
from segcost.samples.scale import deep

ROOT = Path(__file__).resolve().parent.parent


def _modules_after_cli(*argv: str) -> set[str]:
    """The modules loaded by one `segcost ...` run in a new interpreter (listed at exit)."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('\\n'.join(sorted(sys.modules))))\n"
            "from segcost.cli import main\nmain(sys.argv[1:])")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                            check=False)
    assert "segcost: error" not in result.stderr, result.stderr
    return set(result.stdout.split())


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_analyze_never_imports_networkx(tmp_path, fmt):
    path = tmp_path / "deep.onnx"
    onnx.save_model(deep(40), path)
    for argv in (["analyze", str(path), "--format", fmt], ["analyze", "--format", fmt]):
        loaded = _modules_after_cli(*argv, "-o", str(tmp_path / "out"))
        assert "segcost.analyzer" in loaded   # the run did analyze
        assert not {name for name in loaded if name.split(".")[0] == "networkx"}, argv


def _chain() -> Graph:
    graph = Graph()
    graph.inputs = ["x"]
    graph.add_nodes([("a", Node("a", "Relu", inputs=["x"], outputs=["t1"])),
                     ("b", Node("b", "Add", inputs=["t1", "t1"], outputs=["t2"])),
                     ("c", Node("c", "Relu", inputs=["t2"], outputs=["t3"]))])
    return graph


def _mutate(graph: Graph) -> None:
    graph.add_node(Node("d", "Relu", inputs=["t1"], outputs=["t4"]), key="d")
    graph.replace_input("c", "t2", "t4")
    graph.rename_output("b", "t2", "t2b")
    graph.append_input("c", "t2b")
    graph.remove_node("a")
    graph.add_node(Node("a2", "Relu", inputs=["x"], outputs=["t1"]), key="a2")


def _edges(graph: Graph) -> set[tuple[str, str, frozenset[str]]]:
    return {(u, v, frozenset(tensors)) for u, v, tensors in graph.dag.edges(data="tensors")}


def test_a_dag_built_after_mutations_equals_one_kept_in_step_with_them():
    eager, lazy = _chain(), _chain()
    assert len(eager.dag) == 3   # built now, then updated by every mutation
    _mutate(eager)
    _mutate(lazy)
    assert lazy._dag is None   # mutations alone never build it
    assert _edges(lazy) == _edges(eager) == {("a2", "b", frozenset({"t1"})), ("a2", "d", frozenset({"t1"})),
                                             ("d", "c", frozenset({"t4"})), ("b", "c", frozenset({"t2b"}))}
    assert list(lazy.dag.nodes) == list(eager.dag.nodes) == list(lazy.nodes)
    assert all(lazy.dag.nodes[key]["node"] is lazy.node(key) for key in lazy.nodes)
    assert set(lazy.edges()) == {(u, v) for u, v, _ in _edges(eager)}


def test_a_cycle_is_found_without_a_prebuilt_dag():
    graph = Graph()
    graph.inputs = ["x"]
    graph.add_nodes([("a", Node("a", "Add", inputs=["x", "t2"], outputs=["t1"])),
                     ("b", Node("b", "Relu", inputs=["t1"], outputs=["t2"]))])
    assert not graph.in_file_order()
    with pytest.raises(GraphError, match="cycle: a -> b -> a|cycle: b -> a -> b"):
        verify_graph(graph)


def test_an_out_of_order_graph_is_sorted_topologically():
    graph = Graph()
    graph.inputs = ["x"]
    graph.add_nodes([("c", Node("c", "Relu", inputs=["t2"], outputs=["t3"])),
                     ("a", Node("a", "Relu", inputs=["x"], outputs=["t1"])),
                     ("b", Node("b", "Relu", inputs=["t1"], outputs=["t2"]))])
    verify_graph(graph)
    assert graph.topological_order() == ["a", "b", "c"]
    with pytest.raises(GraphError, match="produced by two nodes"):
        graph.add_node(Node("e", "Split", inputs=["x"], outputs=["u", "u"]))
    assert "e" not in graph and len(graph) == 3


def test_the_kept_topological_order_follows_every_mutation():
    graph = _chain()
    verify_graph(graph)   # checks the file order and keeps it
    assert graph.topological_order() == ["a", "b", "c"]
    graph.remove_node("c")
    assert graph.topological_order() == ["a", "b"]
    # a producer added after its consumer: the file order is no longer topological
    graph.add_node(Node("p", "Relu", inputs=["x"], outputs=["y"]), key="p")
    graph.replace_input("a", "x", "y")
    assert not graph.in_file_order()
    assert graph.topological_order() == ["p", "a", "b"]
    order = graph.topological_order()
    order.reverse()   # the caller's copy
    assert graph.topological_order() == ["p", "a", "b"]


def test_the_command_line_caps_openblas_at_one_thread_before_numpy_loads():
    """OpenBLAS starts a thread per core at `import numpy`; the CLI sets the cap first (a user's own count wins)."""
    code = ("import os, sys\n"
            "from segcost import cli\n"
            "assert 'numpy' not in sys.modules and 'onnx' not in sys.modules\n"
            "cli.one_blas_thread(os.environ)\n"
            "import numpy\n"
            "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))")
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                            check=True)
    assert result.stdout.split() == ["1", "1"]   # one thread: the interpreter's own
    env["OPENBLAS_NUM_THREADS"] = "2"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                            check=True)
    assert result.stdout.split()[0] == "2"


def _consumer_table(graph: Graph) -> dict[str, list[str]]:
    return {tensor: sorted(users) for tensor, users in graph._consumers.items() if users}


def test_a_consumer_table_built_after_mutations_equals_one_kept_in_step_with_them():
    eager, lazy = _chain(), _chain()
    assert eager._consumer_table is None and eager.consumers("t1") == ["b"]   # built now, then kept in step
    _mutate(eager)
    _mutate(lazy)
    lazy._consumer_table = None   # built again, from the nodes as they are now
    assert _consumer_table(lazy) == _consumer_table(eager) == {
        "x": ["a2"], "t1": ["b", "d"], "t4": ["c"], "t2b": ["c"]}


def test_loading_and_analyzing_a_model_builds_no_consumer_table():
    from segcost.analyzer import analyze
    from segcost.frontends.onnx import load_model
    from segcost.samples import deeplabv3lite

    graph = load_model(deeplabv3lite(width=0.35, num_classes=3, height=32, width_px=32))
    analyze(graph)
    assert graph._consumer_table is None


def test_bulk_insert_numbers_later_nodes_as_one_by_one():
    """Nodes keeping their own "order" (a loaded file's) leave the next free number where add_node would."""
    specs = [("a", 5), ("b", 0), ("c", None), ("d", 2)]
    one_by_one, bulk = Graph(), Graph()
    for graph in (one_by_one, bulk):
        nodes = [(key, Node(key, "Relu", inputs=[f"in_{key}"], outputs=[f"out_{key}"],
                            meta={} if order is None else {"order": order})) for key, order in specs]
        if graph is bulk:
            graph.add_nodes(nodes)
        else:
            for key, node in nodes:
                graph.add_node(node, key=key)
        graph.add_node(Node("e", "Relu", inputs=["x"], outputs=["y"]), key="e")
    assert ({key: node.meta["order"] for key, node in bulk.nodes.items()}
            == {key: node.meta["order"] for key, node in one_by_one.nodes.items()}
            == {"a": 5, "b": 0, "c": 7, "d": 2, "e": 9})


def test_analyze_leaves_its_graph_and_result_to_the_process_exit(tmp_path):
    """The CLI process does not free the analyzed graph and its result object by object on its way out
    (commands.output.outlive); the report is complete all the same."""
    path, report = tmp_path / "deep.onnx", tmp_path / "out.json"
    onnx.save_model(deep(40), path)
    code = ("import sys, weakref\n"
            "import segcost.analyzer as analyzer\n"
            "from segcost.cli import main\n"
            "plain = analyzer.analyze\n"
            "def watched(graph):\n"
            "    result = plain(graph)\n"
            "    for item, label in ((graph, 'graph'), (result, 'result')):\n"
            "        weakref.finalize(item, print, label + ' freed').atexit = False\n"
            "    return result\n"
            "analyzer.analyze = watched\n"
            "sys.argv[0] = 'segcost'\n"
            "main()")
    result = subprocess.run([sys.executable, "-c", code, "analyze", str(path), "--format", "json", "-o",
                             str(report)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert "freed" not in result.stdout
    assert report.read_text().endswith("}\n")
