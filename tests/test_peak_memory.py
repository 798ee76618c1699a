"""The backward sweep of analyzer.memory gives the forward replay's peak on any schedule.

peak_activation_bytes sweeps a well-formed graph from its last node back (no table of last
uses); the forward replay is the definition. Random schedules with graph inputs read or not,
graph outputs read later or not, constants, omitted ("") tensors, outputs nobody reads,
implicit (subgraph) inputs and repeated names must give the same figure both ways, and the
malformed ones (a tensor produced twice, a node producing a graph input, reads of tensors
nothing produces) must take the forward replay.
"""

from __future__ import annotations

import random

import pytest

from segcost.analyzer.memory import _peak_backwards, _peak_forwards, peak_activation_bytes
from segcost.ir import Graph, Node


def _random_schedule(rng: random.Random, malformed: bool) -> tuple[Graph, list[Node], dict[str, int], set[str]]:
    graph = Graph()
    sizes: dict[str, int] = {}
    constants = {f"w{index}" for index in range(rng.randint(0, 3))}
    graph.inputs = [f"in{index}" for index in range(rng.randint(0, 3))] + rng.sample(sorted(constants) + [""],
                                                                                     rng.randint(0, 1))
    if graph.inputs and rng.random() < 0.2:
        graph.inputs.append(graph.inputs[0])   # named twice
    available = [tensor for tensor in graph.inputs if tensor] + sorted(constants)
    nodes = []
    for step in range(rng.randint(0, 12)):
        reads = [rng.choice(available) for _ in range(rng.randint(0, 3))] if available else []
        if rng.random() < 0.15:
            reads.append("")
        if malformed and rng.random() < 0.1:
            reads.append(f"dangling{step}")
        outputs = [f"t{step}_{index}" for index in range(rng.randint(0, 3))]
        if outputs and rng.random() < 0.15:
            outputs[rng.randrange(len(outputs))] = ""
        if malformed and rng.random() < 0.1 and available:
            outputs.append(rng.choice(available))   # produced twice, or a graph input/constant produced
        implicit = [rng.choice(available)] if available and rng.random() < 0.1 else []
        nodes.append(Node(f"n{step}", "Op", inputs=reads, outputs=outputs, implicit_inputs=implicit))
        available += [tensor for tensor in outputs if tensor]
    produced = [tensor for node in nodes for tensor in node.outputs if tensor]
    graph.outputs = rng.sample(produced + graph.inputs, min(len(produced) + len(graph.inputs), rng.randint(0, 2)))
    if malformed and rng.random() < 0.2:
        graph.outputs.append("nowhere")
    for tensor in {*available, *graph.outputs, "", *(tensor for node in nodes for tensor in node.all_inputs)}:
        sizes[tensor] = rng.choice([0, 1, 4, 16, 1000, 2**70])   # exact ints beyond 64 bits too
    return graph, nodes, sizes, constants


@pytest.mark.parametrize("malformed", [False, True])
def test_the_backward_sweep_gives_the_forward_peak(malformed):
    rng = random.Random(19 + malformed)
    swept = twice = 0
    for _ in range(3000):
        graph, nodes, sizes, constants = _random_schedule(rng, malformed)
        expected = _peak_forwards(graph, nodes, sizes.__getitem__, constants)
        assert peak_activation_bytes(graph, nodes, sizes.__getitem__, constants) == expected, (graph.inputs,
                                                                                             graph.outputs, nodes)
        backwards = _peak_backwards(graph, nodes, sizes.__getitem__, constants)
        if len({tensor for node in nodes for tensor in node.outputs if tensor}) != \
                sum(1 for node in nodes for tensor in node.outputs if tensor):
            assert backwards is None   # a tensor produced twice: the sweep refuses it
            twice += 1
        elif backwards is not None:
            swept += 1
            assert backwards == expected
    assert swept > 900 and (twice > 100 or not malformed)   # most schedules take the backward sweep


def test_a_graph_input_produced_by_a_node_is_replayed_forwards():
    graph = Graph()
    graph.inputs, graph.outputs = ["x"], ["y"]
    nodes = [Node("a", "Op", inputs=["x"], outputs=["y"]), Node("b", "Op", inputs=["y"], outputs=["x"]),
             Node("c", "Op", inputs=["x"], outputs=["z"])]
    sizes = {"x": 10, "y": 1, "z": 100}
    assert _peak_backwards(graph, nodes, sizes.__getitem__, set()) is None
    assert peak_activation_bytes(graph, nodes, sizes.__getitem__, set()) == 111   # x lives from the start


@pytest.mark.parametrize("twice_by", ["two nodes", "one node"])
def test_a_tensor_produced_twice_is_found_by_the_sweep_and_replayed_forwards(twice_by):
    """The backward sweep itself refuses a tensor produced twice (by two nodes or one), however the nodes
    between read it; omitted outputs ("") may repeat."""
    graph = Graph()
    graph.inputs, graph.outputs = ["x"], ["z"]
    first = ["t", ""] if twice_by == "two nodes" else ["y", ""]
    second = ["t", ""] if twice_by == "two nodes" else ["t", "t"]
    nodes = [Node("a", "Op", inputs=["x"], outputs=first), Node("b", "Op", inputs=["x"], outputs=second),
             Node("c", "Op", inputs=["t", first[0]], outputs=["z"])]
    sizes = {"x": 10, "y": 1, "t": 100, "z": 1000, "": 0}
    assert _peak_backwards(graph, nodes, sizes.__getitem__, set()) is None
    assert peak_activation_bytes(graph, nodes, sizes.__getitem__, set()) == \
        _peak_forwards(graph, nodes, sizes.__getitem__, set())
    nodes[0].outputs, nodes[1].outputs, nodes[2].inputs = ["y", ""], ["t", ""], ["t", "y"]   # once each, "" twice
    assert _peak_backwards(graph, nodes, sizes.__getitem__, set()) == \
        _peak_forwards(graph, nodes, sizes.__getitem__, set())


@pytest.mark.parametrize("build", ["deep", "branches"])
def test_the_walks_buffer_sizes_give_the_peak_of_the_tensor_names(build):
    """analyze() hands the walk's per-node buffer sizes (from kinds, without a look-up per tensor) to
    peak_activation_bytes: the peak is the one found from the tensors' names and sizes."""
    import importlib

    from onnx import TensorProto, helper

    from segcost.frontends.onnx import load_model
    from segcost.samples.scale import deep

    walk_module = importlib.import_module("segcost.analyzer.analyze")
    if build == "deep":
        model = deep(60)
    else:   # an If reading an outer tensor (implicit input), outputs nobody reads, an omitted input
        branch = helper.make_graph([helper.make_node("Relu", ["a"], ["b"])], "then", [],
                                   [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 8])])
        model = helper.make_model(helper.make_graph(
            [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["unread"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch),
             helper.make_node("Clip", ["y", "", "hi"], ["z"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8]),
             helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
            initializer=[helper.make_tensor("hi", TensorProto.FLOAT, [], [6.0])]),
            opset_imports=[helper.make_opsetid("", 17)])
    graph = load_model(model)
    walk = walk_module._Walk(graph)
    def size(tensor):
        return None if not tensor or tensor in walk.constants else walk.nbytes(tensor)

    assert walk.buffer_sizes == [(tuple(map(size, node.all_inputs)), tuple(map(size, node.outputs)))
                                 for node in walk.scheduled]
    named = peak_activation_bytes(graph, walk.scheduled, walk.nbytes, walk.constants)
    assert peak_activation_bytes(graph, walk.scheduled, walk.nbytes, walk.constants, walk.buffer_sizes) == named
    assert named == _peak_forwards(graph, walk.scheduled, walk.nbytes, walk.constants) > 0
