"""Evaluate the run-time shape computations that `onnx.shape_inference` leaves symbolic.

Legacy torch exports (HF DPT, MaskFormer/Swin) and paddle2onnx models compute Reshape
targets, Pad amounts, Range bounds and Expand shapes from `Shape` of intermediate tensors:
Shape → Gather/Slice → Cast → Div → Concat → Reshape. onnx's data propagation covers a few
of those ops, so a chain with a Cast or a Div stays open and every layer after it has no
shape. With static graph inputs those values are constants; this module lets onnxruntime
compute them and feeds them back to onnx shape inference, round by round (each round opens
the next `Shape` whose input is now known).

Why not a library end to end (measured on the corpus, tests/corpus): onnxruntime's
`SymbolicShapeInference` needs sympy (not a segcost dependency) and stops with "Incomplete
symbolic shape inference" on DPT, MaskFormer and PP-OCR cls; onnxscript's optimizer is not a
core dependency and leaves 268 MaskFormer tensors open; onnxruntime's basic-level graph
optimization folds the chains but renames or fuses the folded tensors (common-subexpression
elimination, Reshape fusion), so their values cannot be mapped back. What is left here is
the part no library exposes: choosing which tensors are constant given static shapes
(`Shape`/`Size` of a static tensor, then anything computed only from constants). Values
are computed by onnxruntime and shapes by onnx.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from math import prod
from typing import NamedTuple, TypeGuard, cast

import numpy as np
import onnx
from onnx import helper, numpy_helper

from segcost.ir import Shape, is_static_shape
from segcost.ir.onnx_io import shape_of
from segcost.ir.runtime import open_session

# A tensor is evaluated only if it, and every tensor its computation reads, has at most this
# many elements: shape arithmetic is a handful of integers, masks of a window attention a few
# thousand; weights and activations are never computed here.
MAX_ELEMENTS = 1 << 16
MAX_ROUNDS = 256
INT64_MAX = int(np.iinfo(np.int64).max)
# Ops whose value is not a function of their inputs, or that carry subgraphs.
_NOT_EVALUABLE = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                            "Multinomial", "Bernoulli", "If", "Loop", "Scan", "SequenceMap"})

Infer = Callable[[onnx.ModelProto], onnx.ModelProto]


def static_shapes(inferred: onnx.ModelProto,
                  decoded: dict[bytes, Shape | None] | None = None) -> dict[str, Shape | None]:
    """{tensor: shape} from an inferred model's inputs, value_info, outputs and initializers.

    `decoded` caches {serialized TypeProto: shape} across calls: a graph has few distinct
    types, and decoding one field by field costs microseconds (as in ir.read_value_infos).
    """
    shapes: dict[str, Shape | None] = {}
    graph = inferred.graph
    decoded = {} if decoded is None else decoded
    for value in (*graph.input, *graph.value_info, *graph.output):
        type_proto = value.type
        serialized = type_proto.SerializeToString()
        if serialized not in decoded:
            decoded[serialized] = shape_of(type_proto)[1]
        shapes[value.name] = decoded[serialized]
    for init in graph.initializer:
        shapes[init.name] = tuple(int(dim) for dim in init.dims)
    return shapes


def _is_static(shape: Shape | None) -> TypeGuard[tuple[int, ...]]:
    """ir.is_static_shape, and no negative dim (a file may declare dim_value -1)."""
    return _static(shape)


@lru_cache(maxsize=1 << 12)
def _static(shape: Shape | None) -> bool:
    """_is_static, cached: a graph's tensors share a few distinct shapes and every chain round
    checks each of them again (MaskFormer: 16k checks of a few hundred shapes)."""
    return is_static_shape(shape) and all(dim >= 0 for dim in cast(tuple, shape))


def shape_op_value(op_type: str, dims: Shape | None, start: int = 0, end: int | None = None) -> np.ndarray | None:
    """The value of ONNX `Shape` or `Size` applied to a tensor of shape `dims`, or None if it has none.

    Shape: the int64 vector `dims[start:end]` (opset 15's optional `start`/`end`: negative
    counts from the back, out-of-range clamps — Python slice semantics, as the ONNX spec
    defines them). Size: the int64 scalar prod(dims), computed exactly. None when `dims` is not
    static (unknown rank, a symbolic or negative dim) or the value does not fit int64. The one
    implementation for shape resolution (here) and constant folding (passes.cleanup).
    """
    if not _is_static(dims):
        return None
    values = [prod(dims)] if op_type == "Size" else list(dims[start:end])
    if any(value > INT64_MAX for value in values):
        return None   # np.int64 arithmetic would wrap around silently
    return np.array(values[0] if op_type == "Size" else values, dtype=np.int64)


class _Row(NamedTuple):
    """A node's fields, read once: every read of a protobuf field builds a new Python object,
    and each chain round walks the whole graph several times (MaskFormer: 4 rounds, 1.7k nodes)."""
    position: int   # in shell.graph.node
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _rows(shell: onnx.ModelProto) -> list[_Row]:
    return [_Row(index, node.op_type, node.domain, tuple(node.input), tuple(node.output))
            for index, node in enumerate(shell.graph.node)]


def open_consumed(rows: list[_Row], shapes: dict[str, Shape | None]) -> bool:
    """True when some node reads a tensor whose shape is not fully known."""
    return any(name and not _is_static(shapes.get(name)) for row in rows for name in row.inputs)


def resolve_value_chains(shell: onnx.ModelProto, infer: Infer, inferred: onnx.ModelProto) -> onnx.ModelProto:
    """Evaluate shape-computing tensors in `shell` (modified in place) until inference closes.

    `infer` runs onnx shape inference on a model; `inferred` is its result for `shell`.
    Returns the last inferred model. Every graph input of `shell` must be static. A value
    onnxruntime cannot compute ends the rounds; what stays open is reported by the caller.
    """
    rows = _rows(shell)
    inline = {init.name for init in shell.graph.initializer}
    decoded: dict[bytes, Shape | None] = {}
    for _ in range(MAX_ROUNDS):
        shapes = static_shapes(inferred, decoded)
        if not open_consumed(rows, shapes):
            break
        values = _evaluate_round(shell, rows, inline, shapes)
        if not values:
            break
        rows = _inject(shell, rows, values)
        inline.update(values)
        inferred = infer(shell)
    return inferred


def _evaluate_round(shell: onnx.ModelProto, rows: list[_Row], inline: set[str],
                    shapes: dict[str, Shape | None]) -> dict[str, np.ndarray]:
    """Values of the constant tensors read by nodes with an open output (empty when none).

    `rows` describe shell.graph.node in order; `inline` names its initializers.
    """
    producer = {name: row for row in rows for name in row.outputs if name}

    def small(name: str) -> bool:
        shape = shapes.get(name)
        return _is_static(shape) and prod(shape) <= MAX_ELEMENTS

    memo: dict[str, bool] = {}

    def constant(name: str) -> bool:
        """True when `name` is computable from constants and static shapes (iterative DFS)."""
        stack = [name]
        while stack:
            top = stack[-1]
            if top in memo:
                stack.pop()
                continue
            node = producer.get(top)
            if top in inline or node is None:
                memo[top] = top in inline and small(top)
                stack.pop()
                continue
            if node.op_type in ("Shape", "Size") and not node.domain:
                memo[top] = _shape_value(shell.graph.node[node.position], shapes) is not None
                stack.pop()
                continue
            if (node.domain not in ("", "ai.onnx") or node.op_type in _NOT_EVALUABLE
                    or not all(small(output) for output in node.outputs if output)):
                memo[top] = False
                stack.pop()
                continue
            pending = [tensor for tensor in node.inputs if tensor and tensor not in memo]
            if pending:
                stack.extend(pending)
                continue
            memo[top] = all(memo[tensor] for tensor in node.inputs if tensor)
            stack.pop()
        return memo[name]

    targets: set[str] = set()
    for row in rows:
        if all(_is_static(shapes.get(output)) for output in row.outputs if output):
            continue
        for tensor in row.inputs:
            if tensor and tensor not in inline and tensor in producer and constant(tensor):
                targets.update(output for output in producer[tensor].outputs if output)
    if not targets:
        return {}
    return _run(shell, targets, producer, shapes)


def _run(shell: onnx.ModelProto, targets: set[str], producer: dict[str, _Row], shapes: dict) -> dict[str, np.ndarray]:
    """Compute `targets` with onnxruntime on the slice of the graph that produces them."""
    import onnxruntime

    stack, inputs = list(targets), set()
    needed: set[int] = set()
    while stack:
        row = producer.get(stack.pop())
        if row is None or row.position in needed:
            continue
        needed.add(row.position)
        if row.op_type in ("Shape", "Size") and not row.domain:
            continue  # replaced by its value below
        for tensor in row.inputs:
            if tensor in producer:
                stack.append(tensor)
            elif tensor:
                inputs.add(tensor)
    nodes = []
    for index in sorted(needed):
        node = shell.graph.node[index]
        if node.op_type in ("Shape", "Size") and not node.domain:
            nodes.append(helper.make_node("Constant", [], [node.output[0]],
                                          value=numpy_helper.from_array(
                                              cast(np.ndarray, _shape_value(node, shapes)),   # checked by constant()
                                              node.output[0])))
        else:
            nodes.append(node)
    initializers = [init for init in shell.graph.initializer if init.name in inputs]
    outputs = [helper.make_empty_tensor_value_info(name) for name in sorted(targets)]
    model = helper.make_model(helper.make_graph(nodes, "shape_values", [], outputs, initializers),
                              opset_imports=shell.opset_import, ir_version=max(shell.ir_version, 4))
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    try:
        session = open_session(model, options)
        results = session.run(sorted(targets), {})
    except Exception:  # noqa: BLE001 - onnxruntime raises its own types; the tensors just stay open
        return {}
    return dict(zip(sorted(targets), results))


def _shape_value(node: onnx.NodeProto, shapes: dict[str, Shape | None]) -> np.ndarray | None:
    """shape_op_value of a Shape or Size NodeProto."""
    attrs = {attribute.name: attribute.i for attribute in node.attribute}
    return shape_op_value(node.op_type, shapes.get(node.input[0]), attrs.get("start", 0), attrs.get("end"))


def _inject(shell: onnx.ModelProto, rows: list[_Row], values: dict[str, np.ndarray]) -> list[_Row]:
    """Turn computed tensors into initializers; their producers leave the copy. Returns its rows."""
    graph = shell.graph
    gone = [row.position for row in rows if any(output in values for output in row.outputs)]
    for index in reversed(gone):
        del graph.node[index]
    graph.initializer.extend(numpy_helper.from_array(np.asarray(value), name) for name, value in values.items())
    removed = set(gone)
    kept = [row for row in rows if row.position not in removed]
    return [row._replace(position=index) for index, row in enumerate(kept)]
