"""Ops whose output shape constants fix must fit their input, and onnx's inference does not check that.

A model exported at one size and analyzed at another (`--input-shape`, a `--symbolic` probe)
keeps the sizes its exporter baked into constants: a Reshape target `[1, 16, 64]` (directly,
or at the end of a Shape → Slice → Concat chain with a constant tail), an Expand shape, Split
sizes, a position embedding added to the tokens. onnx shape inference passes a Reshape's
target on without comparing element counts, floors SpaceToDepth's division, leaves an
Expand or Split that cannot fit untyped (everything after it then goes non-strict), and
broadcasts a dim it does not know yet with a baked one (`Add([1, ?, 16], pos[1, 17, 16])`
→ `[1, 17, 16]`): when the `?` is computed later (shapes.evaluate) only the nodes with an
open output are inferred again, so the Add keeps 17 tokens, as a declared shape filling an
open tensor (shapes.declared) would. The count comes out silently wrong, while onnxruntime
refuses to run the model at that size. Here each such op is checked against ONNX's rule
once shapes are known, and a misfit is a ShapeError naming the op, the shapes and — after
`--input-shape` — the size the model was exported for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from math import prod
from operator import attrgetter
from typing import cast

from segcost.errors import ShapeError
from segcost.ir import Graph, Node, Shape, is_static_shape
from segcost.ir.opforms import constant_value, normalize_axis, read_operand
from segcost.shapes.export_size import UPSTREAM_STEPS, baked_advice, baked_upstream, size_change_advice

Check = Callable[[Graph, str, Node, tuple[int, ...]], str]


def _static(graph: Graph, tensor: str) -> tuple[int, ...] | None:
    shape = graph.shape(tensor) if tensor else None
    return tuple(shape) if is_static_shape(shape) and all(dim >= 0 for dim in shape) else None


def _reshape(graph: Graph, key: str, node: Node, data: tuple[int, ...]) -> str:
    """Reshape keeps the element count, whatever computed its target (a constant, a shape chain)."""
    target = constant_value(graph, node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
    if target is not None:
        dims = tuple(int(dim) for dim in target.reshape(-1))
        misfit = reshape_misfit(data, dims, bool(node.attrs.get("allowzero", 0)))
        return f"its fixed target shape {list(dims)} does not fit its input {list(data)}: {misfit}" if misfit else ""
    out = _static(graph, node.outputs[0])
    if out is None or prod(out) == prod(data):
        return ""
    return (f"its target, computed from shapes and constants, gives {list(out)}, which does not fit its input "
            f"{list(data)}: {prod(data):,} elements in, {prod(out):,} out")


def reshape_misfit(data: tuple[int, ...], target: tuple[int, ...], allowzero: bool) -> str:
    """Why ONNX Reshape cannot give `target` to a tensor shaped `data`, or "" (0 copies the input's dim
    unless allowzero, one -1 takes what is left)."""
    elements = prod(data)
    dims = []
    for index, dim in enumerate(target):
        if dim == 0 and not allowzero:
            if index >= len(data):
                return f"target dim {index} is 0 (copy the input's), the input has rank {len(data)}"
            dim = data[index]
        dims.append(dim)
    if dims.count(-1) > 1 or any(dim < -1 for dim in dims):
        return "the target is not a valid Reshape shape"
    known = prod(dim for dim in dims if dim != -1)
    if -1 in dims:
        return f"{elements:,} elements are not a multiple of the {known:,} the target fixes" \
            if known > 0 and elements % known else ""
    return "" if known == elements else f"{elements:,} elements in, {known:,} out"


def _expand(graph: Graph, key: str, node: Node, data: tuple[int, ...]) -> str:
    """Expand broadcasts: right-aligned, each input dim is 1 or the target's (or the target's is 1)."""
    target = constant_value(graph, node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
    if target is None:
        return ""
    dims = [int(dim) for dim in target.reshape(-1)]
    for a, b in zip(reversed(data), reversed(dims)):
        if a != b and 1 not in (a, b):
            return f"its shape {dims} does not broadcast from its input {list(data)}"
    return ""


def _split(graph: Graph, key: str, node: Node, data: tuple[int, ...]) -> str:
    """Split's sizes add up to the input's dim along the axis."""
    axis = normalize_axis(int(node.attrs.get("axis", 0)), len(data), f"node {key!r} (Split) axis")
    outs = [_static(graph, tensor) for tensor in node.outputs if tensor]
    if outs and all(out is not None and len(out) == len(data) for out in outs):
        sizes = [out[axis] for out in outs if out is not None]
    else:
        sizes = list(read_operand(graph, key, "split").ints() or ())
    if not sizes or sum(sizes) == data[axis]:
        return ""
    return f"its sizes {sizes} along axis {axis} add up to {sum(sizes)}, its input {list(data)} has {data[axis]}"


def _space_to_depth(graph: Graph, key: str, node: Node, data: tuple[int, ...]) -> str:
    """SpaceToDepth needs H and W divisible by the block size."""
    block = int(node.attrs.get("blocksize", 1))
    if len(data) == 4 and block > 0 and (data[2] % block or data[3] % block):
        return f"its input {list(data)} has H, W not divisible by blocksize {block}"
    return ""


def _depth_to_space(graph: Graph, key: str, node: Node, data: tuple[int, ...]) -> str:
    """DepthToSpace needs C divisible by blocksize²."""
    block = int(node.attrs.get("blocksize", 1))
    if len(data) == 4 and block > 0 and data[1] % (block * block):
        return f"its input {list(data)} has C not divisible by blocksize² = {block * block}"
    return ""


def broadcast_misfit(shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...] | None, str]:
    """ONNX multidirectional broadcasting (docs/Broadcasting.md): (the result shape, "") or (None, why not).

    Shapes are right-aligned; along each axis every dim is 1 or the same size.
    """
    rank = max(map(len, shapes))
    out = []
    for axis in range(rank):
        sizes = {shape[axis - rank + len(shape)] for shape in shapes if axis - rank + len(shape) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            return None, f"axis {axis} is {' vs '.join(map(str, sorted(sizes, reverse=True)))}"
        out.append(sizes.pop() if sizes else 1)
    return tuple(out), ""


@lru_cache(maxsize=1 << 12)
def _broadcast_problem(shapes: tuple[Shape | None, ...], given: Shape | None) -> tuple[str, tuple[int, ...] | None]:
    """("", None) when static `shapes` broadcast to `given` (or one of them is not static); else (why, the
    broadcast shape or None). Cached: a graph's elementwise ops combine a few distinct shapes (50k Adds: 350 ms
    uncached)."""
    if not all(_static_shape(shape) for shape in shapes):
        return "", None
    out, misfit = broadcast_misfit(cast(list[tuple[int, ...]], list(shapes)))
    if out is None:
        return misfit, None
    return ("", None) if not _static_shape(given) or given == out else ("output", out)


def _static_shape(shape: Shape | None) -> bool:
    return is_static_shape(shape) and all(dim >= 0 for dim in shape)


def _broadcast(graph: Graph, key: str, node: Node, data: tuple[int, ...]) -> str:
    """Elementwise ops broadcast their inputs multidirectionally; the output has the broadcast shape."""
    names = [name for name in node.inputs if name]
    if len(names) < 2:
        return ""
    output = node.outputs[0] if node.outputs else ""
    shapes = tuple(map(graph.shape, names))
    problem, out = _broadcast_problem(shapes, graph.shape(output) if output else None)
    if not problem:
        return ""
    operands = " and ".join(f"{name!r} {list(shape or ())}" for name, shape in zip(names, shapes))
    if out is None:
        return f"its inputs {operands} do not broadcast: {problem}"
    return f"its inputs {operands} broadcast to {list(out)}, but its output {output!r} is given " \
           f"{list(graph.shape(output) or ())} (declared in the file or taken from an earlier guess)"


# Ops with ONNX multidirectional broadcasting (opset 7 on; before, `broadcast`/`axis` attributes).
BROADCASTING = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Mod", "And", "Or", "Xor", "Equal", "Greater",
                          "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Min", "Mean", "Sum", "Where",
                          "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor"})
CHECKS: dict[str, Check] = {"Reshape": _reshape, "Expand": _expand, "Split": _split,
                            "SpaceToDepth": _space_to_depth, "DepthToSpace": _depth_to_space,
                            **dict.fromkeys(BROADCASTING, _broadcast)}
_OP_TYPE = attrgetter("op_type")
_BAKED = {"Reshape": "target was", "Expand": "shape was", "Split": "split sizes were",
          "SpaceToDepth": "block size was", "DepthToSpace": "block size was"}


def check_fit(graph: Graph) -> None:
    """Raise ShapeError for the first op (in graph order) whose constant-fixed shape does not fit its input.

    Only ops with a static data input are checked (a symbolic one is checked at each size);
    elementwise ops only when every input is static, and from opset 7 (multidirectional broadcasting).
    """
    if CHECKS.keys().isdisjoint(map(_OP_TYPE, graph.nodes.values())):
        return   # no op to check (a C-speed look at 100k nodes; the order is needed only for a message)
    if _first_misfit(graph, graph.nodes.items()) is None:
        return   # the usual case, found in the table's order; the topological order only names the first
    found = _first_misfit(graph, ((key, graph.node(key)) for key in graph.topological_order()))
    if found is not None:
        key, node, problem = found
        baked = _BAKED.get(node.op_type) or _baked_operand(graph, node)
        advice = baked_advice(graph, baked) if baked else size_change_advice(graph, ())
        raise ShapeError(f"node {key!r} ({node.op_type}): {problem}{advice}")


def _first_misfit(graph: Graph, nodes: Iterable[tuple[str, Node]]) -> tuple[str, Node, str] | None:
    broadcasting = graph.info.opset >= 7
    tensor = graph.tensors.get
    for key, node in nodes:
        check = CHECKS.get(node.op_type)
        if check is None:
            continue
        inputs = node.inputs
        if node.domain not in ("", "ai.onnx") or not inputs or not inputs[0]:
            continue
        if check is _broadcast:   # checks every input's shape itself (cached per combination of shapes)
            if not broadcasting:
                continue
            # The common form inline (check_fit at 33k Adds: 66 -> 43 ms): two inputs and an output, each named
            # and held in graph.tensors with a shape -- graph.shape's answer, the shapes _broadcast would pass on.
            outputs = node.outputs
            if len(inputs) == 2 and outputs and inputs[1] and outputs[0]:
                first, second, given = tensor(inputs[0]), tensor(inputs[1]), tensor(outputs[0])
                if (first is not None and second is not None and given is not None and first.shape is not None
                        and second.shape is not None and given.shape is not None
                        # equal shapes broadcast to themselves (a residual Add): no cache look-up, which hashes them
                        and (first.shape == second.shape == given.shape
                             or not _broadcast_problem((first.shape, second.shape), given.shape)[0])):
                    continue
            problem = _broadcast(graph, key, node, ())
            if problem:
                return key, node, problem
            continue
        data = _static(graph, node.inputs[0])
        if data is None:
            continue
        problem = check(graph, key, node, data)
        if problem:
            return key, node, problem
    return None


def _baked_operand(graph: Graph, node: Node) -> str:
    """For an elementwise op: "shape of constant 'pos' [1, 17, 16] (a position embedding, say) was", or the
    upstream op whose output size a constant fixes (see export_size.baked_upstream), or ""."""
    for name in node.inputs:
        if name and graph.is_constant(name) and prod(graph.initializers[name].shape) > 1:
            return f"shape of its constant {name!r} {list(graph.initializers[name].shape)} (a position embedding " \
                   f"or a mask baked into the export, say) was"
    for name in node.inputs:
        if name and _from_constants(graph, name):
            return f"shape of {name!r} {list(graph.shape(name) or ())}, computed from constants only (a position " \
                   f"embedding baked into the export, say), was"
    for name in node.inputs:
        found = baked_upstream(graph, name) if name else ""
        if found:
            return found
    return ""


def _from_constants(graph: Graph, tensor: str) -> bool:
    """`tensor` is computed from initializers alone — no graph input upstream — within UPSTREAM_STEPS nodes
    (a class token concatenated to a position table: Concat(cls_pos, patch_pos))."""
    stack, seen = [tensor], set()
    while stack:
        name = stack.pop()
        if not name or name in seen or name in graph.initializers:
            continue
        seen.add(name)
        key = graph.producer(name)
        if key is None or len(seen) > UPSTREAM_STEPS:
            return False   # a graph input (or too far to tell)
        stack.extend(graph.node(key).inputs)
    return bool(seen)
