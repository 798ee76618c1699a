"""Synthetic graphs of any size for scale tests: deep chains and wide fan-outs of small convs.

`deep(n)`: Conv → Relu → Add(residual) blocks in one long chain. `wide(n)`: one input feeding
many parallel Conv → Relu branches, summed in a balanced tree of Adds. Tensors are tiny
(1×8×8×8), so the cost of a run is the tool's per-node work, not arithmetic.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHANNELS, SIDE = 8, 8


def _conv_weight(name: str, rng: np.random.Generator) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) * 0.1).astype(np.float32), name)


def _model(nodes, initializers, output: str) -> onnx.ModelProto:
    shape = [1, CHANNELS, SIDE, SIDE]
    graph = helper.make_graph(nodes, "scale", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="segcost-scale")
    model.ir_version = 8
    return model


def deep(node_count: int, seed: int = 0) -> onnx.ModelProto:
    """About `node_count` nodes in residual blocks of Conv, Relu, Add (3 nodes each)."""
    rng = np.random.default_rng(seed)
    nodes, initializers, current = [], [], "input"
    for block in range(max(1, node_count // 3)):
        weight = _conv_weight(f"w{block}", rng)
        initializers.append(weight)
        nodes += [helper.make_node("Conv", [current, weight.name], [f"c{block}"], name=f"conv{block}",
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{block}"], [f"r{block}"], name=f"relu{block}"),
                  helper.make_node("Add", [current, f"r{block}"], [f"a{block}"], name=f"add{block}")]
        current = f"a{block}"
    return _model(nodes, initializers, current)


def wide(node_count: int, seed: int = 0) -> onnx.ModelProto:
    """About `node_count` nodes: parallel Conv → Relu branches of one input, summed pairwise."""
    rng = np.random.default_rng(seed)
    branches = max(2, node_count // 3)
    nodes, initializers, level = [], [], []
    for branch in range(branches):
        weight = _conv_weight(f"w{branch}", rng)
        initializers.append(weight)
        nodes += [helper.make_node("Conv", ["input", weight.name], [f"c{branch}"], name=f"conv{branch}",
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{branch}"], [f"r{branch}"], name=f"relu{branch}")]
        level.append(f"r{branch}")
    depth = 0
    while len(level) > 1:
        next_level = []
        for index in range(0, len(level) - 1, 2):
            name = f"sum{depth}_{index}"
            nodes.append(helper.make_node("Add", [level[index], level[index + 1]], [name], name=name))
            next_level.append(name)
        if len(level) % 2:
            next_level.append(level[-1])
        level, depth = next_level, depth + 1
    return _model(nodes, initializers, level[0])
