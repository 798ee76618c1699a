"""How many trips a Loop or Scan runs, read from constants and static shapes (analyzer.control_flow counts them).

A Loop's trip count M and conditions may be constants, or computed from constants and static shapes
(`Shape(x)[2]`): computed_value evaluates such a tensor as `segcost cost` folds it.
"""

from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import cast

import numpy as np
from onnx import numpy_helper

from segcost.ir import Graph, Initializer, ModelInfo, Node, Shape, TensorInfo, is_static_shape
from segcost.ir.onnx_io import to_model
from segcost.shapes.evaluate import MAX_ELEMENTS, shape_op_value
from segcost.shapes.values import NotExact, compute_values

__all__ = ["MAX_TRIP_COUNT", "computed_value", "constant_int", "has_computed_condition", "loop_trips", "scan_trips"]

MAX_TRIP_COUNT = 1 << 31   # at or above, with a computed condition: a `while` loop's placeholder, not a count


def constant_int(graph: Graph, tensor: str) -> int | None:
    """The one-element integer value of `tensor`: an initializer, or computed from constants and static shapes."""
    init = graph.initializers.get(tensor) if tensor else None
    if init is not None:
        value = init.array if init.size == 1 else None
    else:
        value = computed_value(graph, tensor) if tensor and graph.producer(tensor) is not None else None
    if value is None or value.size != 1 or value.dtype.kind not in "iub":
        return None
    return int(value.reshape(-1)[0])


MAX_COMPUTED_NODES = 64   # nodes of a trip count's computation (Shape -> Gather -> ...) evaluated for it
_NOT_COMPUTED = frozenset({"If", "Loop", "Scan", "SequenceMap", "RandomNormal", "RandomNormalLike",
                           "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"})


def computed_value(graph: Graph, tensor: str) -> np.ndarray | None:
    """The value of `tensor` when the nodes computing it read only constants and static shapes, else None.

    A Loop's trip count may be computed from shapes (`Shape(x)[2]`): static once the inputs
    are, and `segcost cost` folds it (passes.cleanup: Shape values, then onnx.reference)
    before counting. Here the same is done for only the nodes that compute it, with the
    loader's shape-chain evaluator (shapes.values) and onnx.reference for what it refuses — at most
    MAX_COMPUTED_NODES standard ops, every tensor static and at most shapes.evaluate's
    MAX_ELEMENTS — so analyze counts the trips cost counts.
    """
    nodes: dict[str, Node] = {}
    stack = [tensor]
    while stack:
        key = graph.producer(stack.pop())
        if key is None or key in nodes:
            continue
        node = graph.node(key)
        if (node.domain or node.op_type in _NOT_COMPUTED or len(nodes) >= MAX_COMPUTED_NODES
                or not all(_small(graph.shape(output)) for output in node.outputs if output)):
            return None
        nodes[key] = node
        if node.op_type not in ("Shape", "Size"):   # those are replaced by their values
            stack.extend(name for name in node.inputs if name)
    part = Graph(ModelInfo(opset_imports=dict(graph.info.opset_imports)))
    for key, node in nodes.items():
        if node.op_type in ("Shape", "Size"):
            value = shape_op_value(node.op_type, graph.shape(node.inputs[0]) if node.inputs else None,
                                   node.attrs.get("start", 0), node.attrs.get("end"))
            if value is None:
                return None
            part.initializers[node.outputs[0]] = Initializer.from_array(node.outputs[0], value)
            continue
        part.add_node(replace(node, inputs=list(node.inputs), outputs=list(node.outputs), meta={}), key)
        for name in node.inputs:
            if name in graph.initializers:
                part.initializers[name] = graph.initializers[name]
            elif name and graph.producer(name) is None:
                return None   # a graph input: not a constant
    if tensor in part.initializers:
        return part.initializers[tensor].array
    part.outputs = [tensor]
    part.tensors[tensor] = TensorInfo(tensor, graph.dtype(tensor), graph.shape(tensor))
    model = to_model(part, keep_value_info=False)
    # the loader's shape-chain evaluator first (numpy, exact as onnxruntime); ops it does not
    # take exactly go to onnx.reference, as passes.cleanup folds them for `segcost cost`
    producer = {output: proto for proto in model.graph.node for output in proto.output}
    try:
        known = {name: init.array for name, init in part.initializers.items()}
        return compute_values([tensor], producer, known, part.info.opset)[tensor]
    except NotExact:
        pass
    # deferred: onnx.reference takes a while to import and only an op numpy does not take needs it
    from onnx.reference import ReferenceEvaluator

    try:
        results = cast(list, ReferenceEvaluator(model).run([tensor], {}))
        return np.asarray(results[0])
    except Exception:  # noqa: BLE001 - an op the reference cannot run leaves the trip count unknown
        return None


def _small(shape: Shape | None) -> bool:
    return is_static_shape(shape) and min(shape, default=0) >= 0 and prod(shape) <= MAX_ELEMENTS


def loop_trips(graph: Graph, node: Node) -> int | None:
    """The trips a Loop runs at most, or None when unknown.

    ONNX runs `for i < M and cond`: 0 trips when the initial condition is a constant false; at
    most 1 when the body returns a constant false as the next condition; M when constant.
    M ≥ MAX_TRIP_COUNT with a condition that can stop the loop is an exporter's `while`
    placeholder (torch writes INT64_MAX), not a count: None. With a condition that cannot stop
    it, M is the trip count however large.
    """
    count = constant_int(graph, node.inputs[0]) if node.inputs and node.inputs[0] else None
    if count is not None and count < 0:
        return None
    condition = node.inputs[1] if len(node.inputs) > 1 else ""
    if condition and constant_int(graph, condition) == 0:
        return 0   # `while (false)`: the body never runs
    if _next_condition(node) is False:
        return 1 if count is None or count >= 1 else 0   # the first trip returns false
    if count is None:
        return None
    if count >= MAX_TRIP_COUNT and has_computed_condition(graph, node):
        return None
    return count


def has_computed_condition(graph: Graph, node: Node) -> bool:
    """Whether the loop may stop before M trips for a reason only known at run time: its initial condition,
    or the body's next condition, is computed."""
    condition = node.inputs[1] if len(node.inputs) > 1 else ""
    return bool(condition) and constant_int(graph, condition) is None or _next_condition(node) is None


def _next_condition(node: Node) -> bool | str | None:
    """What a Loop body returns as its next condition: "carried" (its condition input handed on unchanged,
    through Identity or under the same name), True/False (a constant), or None (computed)."""
    body = node.attrs.get("body")
    if body is None or len(body.input) < 2 or not body.output:
        return "carried"   # malformed bodies are the checker's; nothing stops the loop here
    carried, returned = body.input[1].name, body.output[0].name
    producers = {output: proto for proto in body.node for output in proto.output}
    seen: set[str] = set()
    while returned not in seen:   # follow Identity hand-overs back to the condition input
        seen.add(returned)
        if returned == carried:
            return "carried"
        proto = producers.get(returned)
        if proto is None:
            tensor = next((init for init in body.initializer if init.name == returned), None)
            return None if tensor is None else _scalar_truth(tensor)
        if proto.op_type == "Constant" and not proto.domain:
            attribute = next((attr for attr in proto.attribute if attr.name in ("value", "value_int")), None)
            if attribute is None:
                return None
            return bool(attribute.i) if attribute.name == "value_int" else _scalar_truth(attribute.t)
        if proto.op_type != "Identity" or proto.domain or not proto.input:
            return None
        returned = proto.input[0]
    return None


def _scalar_truth(tensor) -> bool | None:
    """The truth of a one-element TensorProto (read only when it has one element), else None."""
    if prod(tensor.dims) != 1 or tensor.data_location == tensor.EXTERNAL:
        return None
    try:
        return bool(numpy_helper.to_array(tensor).reshape(-1)[0])
    except (ValueError, TypeError, IndexError):
        return None


def scan_trips(graph: Graph, node: Node) -> int | None:
    """The trips a Scan runs: the static length of its first scan input along that input's scan axis
    (`scan_input_axes`, default 0; ONNX Scan, opset 9 and later), or None when it is not known."""
    if graph.info.opset < 9:
        return None   # opset-8 Scan iterates a batch of sequences with optional lengths
    count = int(node.attrs.get("num_scan_inputs", 0))
    scan_inputs = node.inputs[len(node.inputs) - count:] if count else []
    if not scan_inputs:
        return None
    shape = graph.shape(scan_inputs[0])
    axes = list(node.attrs.get("scan_input_axes", [0] * count))
    if shape is None or not axes:
        return None
    axis = axes[0] + len(shape) if axes[0] < 0 else axes[0]
    length = shape[axis] if 0 <= axis < len(shape) else None
    return length if isinstance(length, int) else None

