"""If nodes whose condition is known at the given input shapes: shapes follow the branch taken.

onnx shape inference types an If's outputs by merging its two branches: when they give
different shapes (a ×2 upsample against a pass-through, say) every differing dim becomes
a fresh symbol and every layer downstream is left without a shape — even when the
condition is a constant, or computed from static shapes (`Shape(x)[2] > 48`), so that which
branch runs is fixed by the input size (onnxruntime runs just that one). Here such an If is
replaced, in the weightless inference copy only, by its taken branch: the branch's nodes
with its own names prefixed (onnx.compose.add_prefix_graph, so no name clashes with the
outer graph) and an Identity per output onto the If's output names. The IR keeps the If;
`graph.nodes[key].meta["branch_taken"]` names the branch (control-flow costing counts it) and
`meta["subgraph_tensors"]` holds the branch's inferred shapes under its own names.

Only top-level If nodes of the standard domain are replaced; a branch with sparse
initializers is left alone. An unknown condition leaves the If as onnx infers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache

import numpy as np
import onnx
from onnx import helper
from onnx.compose import add_prefix_graph

from segcost.ir import Graph, Shape, TensorInfo
from segcost.shapes.evaluate import shape_op_value, static_shapes
from segcost.shapes.values import NotExact, compute_values

BRANCH_TAKEN = "branch_taken"
_PREFIX = "segcost.branch/"   # an inlined branch's names: _PREFIX + If key + "/" + the branch's own name
# Branch constants up to this many elements go into the inference copy with their data (shape
# arithmetic reads them); larger ones as typed inputs, like the model's own weights.
_INLINE_ELEMENTS = 1 << 16


def condition_value(value: np.ndarray | None) -> bool | None:
    """The truth value of an If condition (a one-element bool/number tensor), or None when it has none."""
    if value is None or np.asarray(value).size != 1:
        return None
    return bool(np.asarray(value).reshape(-1)[0])


def open_ifs(graph: Graph) -> dict[str, str]:
    """{If key: its condition tensor} for the graph's top-level standard If nodes without a decided branch."""
    return {key: node.inputs[0] for key, node in graph.nodes.items()
            if node.op_type == "If" and node.domain in ("", "ai.onnx") and node.inputs and node.inputs[0]
            and BRANCH_TAKEN not in node.meta}


# Tensors walked back from an If condition to find what it is computed from, and the elements of a constant
# read on the way (a condition is a comparison of a few shape dims; anything larger is run-time data).
_CONDITION_CONE_NODES = 256
_CONDITION_CONSTANT_ELEMENTS = 1 << 16


def computed_conditions(graph: Graph, shell: onnx.ModelProto, inferred: onnx.ModelProto) -> dict[str, np.ndarray]:
    """{condition tensor: value} for the open If conditions that constants and the static shapes of
    `inferred` decide (`Greater(Shape(x)[2], 48)`), computed by shapes.values (numpy, exactly as
    onnxruntime); a condition that needs run-time data, or more than _CONDITION_CONE_NODES nodes, is
    left out. Computed up front, since an If whose branches agree in shape (or that feeds only graph
    outputs) leaves no shape open for the value-chain rounds to decide it by."""
    wanted = [name for name in open_ifs(graph).values() if name not in graph.initializers]
    if not wanted:
        return {}
    producer = {output: node for node in shell.graph.node for output in node.output if output}
    shapes = cache(lambda: static_shapes(inferred))   # read once, when a cone first reaches a Shape/Size
    known: dict[str, np.ndarray] = {}   # values met in the cones, shared by the conditions
    found = {}
    for condition in dict.fromkeys(wanted):
        if not _cone_closes(condition, graph, producer, shapes, known):
            continue
        try:
            value = compute_values([condition], producer, known, graph.info.opset)[condition]
        except (NotExact, ValueError, TypeError, IndexError):
            continue
        if condition_value(value) is not None:
            found[condition] = value
    return found


def _cone_closes(condition: str, graph: Graph, producer: Mapping[str, onnx.NodeProto],
                 shapes: Callable[[], Mapping[str, Shape | None]], known: dict[str, np.ndarray]) -> bool:
    """Whether `condition` is computed from small constants and Shape/Size of static shapes alone, within
    _CONDITION_CONE_NODES tensors; the values met on the way are added to `known`."""
    cone: set[str] = set()
    stack = [condition]
    while stack:
        if len(cone) > _CONDITION_CONE_NODES:
            return False
        name = stack.pop()
        if not name or name in cone or name in known:
            continue
        cone.add(name)
        init = graph.initializers.get(name)
        if init is not None:
            if init.size > _CONDITION_CONSTANT_ELEMENTS:
                return False
            known[name] = init.array
            continue
        node = producer.get(name)
        if node is None:
            return False   # a graph input: run-time data
        if node.op_type in ("Shape", "Size") and node.domain in ("", "ai.onnx"):
            attrs = {attribute.name: attribute.i for attribute in node.attribute}
            value = shape_op_value(node.op_type, shapes().get(node.input[0]), attrs.get("start", 0), attrs.get("end"))
            if value is None:
                return False
            known[name] = value
            continue
        stack.extend(node.input)
    return True


def take_branches(graph: Graph, shell: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> list[str]:
    """Replace, in `shell`, each If of `graph` whose condition has a value in `values` by its taken branch.

    Sets `meta["branch_taken"]` ("then_branch" or "else_branch") on the IR node. Returns the
    keys of the If nodes replaced (empty: `shell` is unchanged).
    """
    wanted = {key: condition_value(values[name]) for key, name in open_ifs(graph).items() if name in values}
    wanted = {key: taken for key, taken in wanted.items() if taken is not None}
    if not wanted:
        return []
    replaced = []
    protos = shell.graph.node
    position = {tuple(proto.output): index for index, proto in enumerate(protos) if proto.op_type == "If"}
    branches: dict[int, list[onnx.NodeProto]] = {}   # {index in the shell: the nodes replacing its If}
    for key, taken in wanted.items():
        node = graph.node(key)
        index = position.get(tuple(node.outputs))
        attribute = "then_branch" if taken else "else_branch"
        branch = node.attrs.get(attribute)
        if index is None or branch is None or branch.sparse_initializer or len(branch.output) != len(node.outputs):
            continue
        branches[index] = _inlined(branch, f"{_PREFIX}{key}/", node.outputs, shell)
        node.meta[BRANCH_TAKEN] = attribute
        replaced.append(key)
    if replaced:   # the node list rebuilt once, each replaced If's branch in its place
        nodes = [new for index, proto in enumerate(protos) for new in branches.get(index, (proto,))]
        del shell.graph.node[:]
        shell.graph.node.extend(nodes)
    return replaced


def _inlined(branch: onnx.GraphProto, prefix: str, outputs: list[str], shell: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The branch's nodes, its names prefixed, then Identity nodes onto the If's `outputs`; its constants
    are added to `shell` (small ones with their data, others as typed inputs)."""
    defined = {name for proto in branch.node for name in proto.output} | {init.name for init in branch.initializer}
    # outputs the branch defines are renamed too (add_prefix_graph leaves graph outputs alone unless in its map);
    # an output that is an outer tensor passed through keeps its name
    names = {value.name: prefix + value.name for value in branch.output if value.name in defined}
    copy = add_prefix_graph(branch, prefix, rename_inputs=False, rename_outputs=False, rename_value_infos=False,
                            name_map=names)
    for init in copy.initializer:
        if np.prod(tuple(init.dims), dtype=np.int64) <= _INLINE_ELEMENTS:
            shell.graph.initializer.append(init)
        else:
            shell.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    nodes = list(copy.node)
    for source, target in zip(branch.output, outputs):
        if target:   # an output the branch produces (prefixed), or an outer tensor it passes through as is
            nodes.append(helper.make_node("Identity", [names.get(source.name, source.name)], [target],
                                          name=f"{prefix}output/{target}"))
    return nodes


def collect_branch_shapes(graph: Graph, keys: list[str]) -> None:
    """Move the inlined branches' tensors out of graph.tensors into their If node's meta["subgraph_tensors"]
    (under the branch's own names, as read_subgraph_infos keeps them)."""
    for key in keys:
        node = graph.node(key)
        prefix = f"{_PREFIX}{key}/"
        found: dict[str, TensorInfo] = {}
        for name in [name for name in graph.tensors if name.startswith(prefix)]:
            info = graph.tensors.pop(name)
            own = name[len(prefix):]
            found[own] = TensorInfo(own, info.dtype, info.shape)
        for source, target in zip(node.attrs[node.meta[BRANCH_TAKEN]].output, node.outputs):   # named after the If's
            if target and source.name not in found and (given := graph.tensors.get(target)) is not None:
                found[source.name] = TensorInfo(source.name, given.dtype, given.shape)
        node.meta["subgraph_tensors"] = found
