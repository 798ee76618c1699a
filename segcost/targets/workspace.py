"""Scratch memory an onnxruntime CPU kernel allocates beyond its inputs and outputs, per op.

run_bounds bounds the tensors a graph names; some kernels allocate a temporary that is in no
shape of the graph, and that temporary can be far larger than the file or any tensor:
a 162-byte three-operand Einsum of 256x256 matrices asks onnxruntime for 16 GiB.
One small function per op, registered in WORKSPACE_RULES, returns that temporary's elements;
ops not listed allocate nothing that grows beyond their outputs, as far as their kernels show.

Left out on purpose: float Conv's im2col buffer. MLAS (onnxruntime/core/mlas/lib/convolve.cpp,
MlasConvPrepare) splits the expansion into per-thread segments of a fixed working size, so
it does not grow with C·kh·kw·outH·outW (a 64-channel 31x31 Conv at 256x256 peaks at 175 MB).
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

from segcost.analyzer.rules.einsum import einsum_largest_intermediate
from segcost.ir import Graph, Node, is_static_shape

__all__ = ["WORKSPACE_RULES", "workspace_elements"]

Shapes = list[tuple[int, ...]]
WORKSPACE_RULES: dict[str, Callable[[Node, Shapes], int]] = {}


def _rule(op_type: str):
    def register(function: Callable[[Node, Shapes], int]) -> Callable[[Node, Shapes], int]:
        WORKSPACE_RULES[op_type] = function
        return function
    return register


@_rule("Einsum")
def _einsum(node: Node, shapes: Shapes) -> int:
    """Largest pairwise partial result (onnxruntime cpu/math/einsum_utils/einsum_typed_compute_processor.cc)."""
    equation = node.attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    return einsum_largest_intermediate(equation, shapes, f"node {node.name!r} (Einsum)") \
        if isinstance(equation, str) else 0


@_rule("ConvTranspose")
def _conv_transpose(node: Node, shapes: Shapes) -> int:
    """col2im buffer (C_out/group)·prod(kernel)·prod(input spatial) (onnxruntime cpu/nn/conv_transpose.cc)."""
    if len(shapes) < 2 or len(shapes[0]) < 3 or len(shapes[1]) < 3:
        return 0
    return prod(shapes[1][1:]) * prod(shapes[0][2:])


def workspace_elements(graph: Graph, node: Node) -> int:
    """Elements of the scratch buffer onnxruntime's CPU kernel for `node` allocates (0 if none is known).

    Needs static input shapes (run_bounds checks them first); an input without one gives 0.

    Raises:
        ShapeError: an Einsum equation that does not fit its operands.
    """
    rule = WORKSPACE_RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if rule is None:
        return 0
    shapes: Shapes = []
    for name in node.inputs:
        shape = graph.shape(name) if name else ()
        if shape is None or not is_static_shape(shape) or any(dim < 0 for dim in shape):
            return 0
        shapes.append(tuple(shape))
    return rule(node, shapes)
