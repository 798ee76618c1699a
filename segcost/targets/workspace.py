"""Scratch memory an onnxruntime CPU kernel allocates beyond its inputs and outputs, per op.

run_bounds bounds the tensors a graph names; some kernels allocate a temporary that is in no
shape of the graph, and that temporary can be far larger than the file or any tensor:
a 162-byte three-operand Einsum of 256x256 matrices asks onnxruntime for 16 GiB.
One small function per op, registered in WORKSPACE_RULES, returns that temporary's bytes
from the node's static input and output shapes; each cites the kernel it reads. Ops not
listed allocate nothing that grows beyond their outputs, as far as their kernels show.

Left out on purpose: float Conv's im2col buffer. MLAS (onnxruntime/core/mlas/lib/convolve.cpp,
MlasConvPrepare) splits the expansion into per-thread segments of a fixed working size, so
it does not grow with C·kh·kw·outH·outW (breaker7: a 64-channel 31x31 Conv at 256x256 peaks at
175 MB). A Conv between DequantizeLinear nodes is another matter: onnxruntime's QDQ fusion
(onnxruntime/core/optimizer/qdq_transformer) runs it as QLinearConv, whose im2col is whole.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

from segcost.analyzer.rules.einsum import einsum_largest_intermediate
from segcost.ir import Graph, Node, is_static_shape, tensor_nbytes

__all__ = ["WORKSPACE_RULES", "workspace_bytes"]

Shapes = list[tuple[int, ...]]
Rule = Callable[[Graph, Node, Shapes, tuple[int, ...]], int]
WORKSPACE_RULES: dict[str, Rule] = {}
POINTER_BYTES = 8
EINSUM_COPIES = 2   # a pairwise step's product and its permuted copy (measured, see _einsum)


def _rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        WORKSPACE_RULES.update(dict.fromkeys(op_types, function))
        return function
    return register


def _bytes(graph: Graph, tensor: str, elements: int) -> int:
    """`elements` elements of `tensor`'s type, packed (tensor_nbytes); 1 byte each for an unknown type."""
    return tensor_nbytes(graph.dtype(tensor), elements) or elements


@_rule("Einsum")
def _einsum(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...]) -> int:
    """2 × the largest pairwise partial result (onnxruntime cpu/math/einsum_utils/, typed processor).

    Twice: the product and the permuted copy made for the next step. Measured with onnxruntime 1.32
    on 'ab,cd,bd->ac': n=96 (a 324 MiB partial result) peaks at 742 MiB RSS, n=128 (1 GiB) at 2.12 GiB.
    """
    equation = node.attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    if not isinstance(equation, str):
        return 0
    largest = einsum_largest_intermediate(equation, shapes, f"node {node.name!r} (Einsum)")
    return _bytes(graph, node.outputs[0], EINSUM_COPIES * largest)


@_rule("ConvTranspose")
def _conv_transpose(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...]) -> int:
    """col2im buffer (C_out/group)·prod(kernel)·prod(input spatial) elements (onnxruntime cpu/nn/conv_transpose.cc)."""
    if len(shapes) < 2 or len(shapes[0]) < 3 or len(shapes[1]) < 3:
        return 0
    return _bytes(graph, node.outputs[0], prod(shapes[1][1:]) * prod(shapes[0][2:]))


def _pointwise(node: Node, weight: tuple[int, ...]) -> bool:
    """A 1x1 kernel at stride 1 without padding: the kernels read the input in place."""
    return prod(weight[2:]) == 1 and set(node.attr("strides") or [1]) == {1} and not any(node.attr("pads") or [0]) \
        and node.attr("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET", "VALID", b"VALID")


def _im2col_bytes(node: Node, weight: tuple[int, ...], output: tuple[int, ...]) -> int:
    """uint8 im2col of (C/group)·prod(kernel) rows by prod(output spatial) columns (0 for a pointwise conv).

    onnxruntime cpu/nn/conv_integer.cc (col_buffer_size = kernel_dim · output_image_size) and
    cpu/nn/qlinearconv.cc (the same; a depthwise QLinearConv keeps one pointer per kernel tap and
    output pixel instead).
    """
    if len(weight) < 3 or len(output) < 3 or _pointwise(node, weight):
        return 0
    group = int(node.attr("group", 1) or 1)
    if group > 1 and weight[1] == 1 and weight[0] == group:   # depthwise: an indirection buffer
        return POINTER_BYTES * prod(weight[2:]) * prod(output[2:])
    return prod(weight[1:]) * prod(output[2:]) * (group if len(weight) > 4 else 1)


@_rule("ConvInteger")
def _conv_integer(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...]) -> int:
    """uint8 im2col buffer (C/group)·prod(kernel)·prod(output spatial) (onnxruntime cpu/nn/conv_integer.cc)."""
    return _im2col_bytes(node, shapes[1], output) if len(shapes) > 1 else 0


@_rule("QLinearConv")
def _qlinear_conv(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...]) -> int:
    """uint8 im2col buffer, as ConvInteger (onnxruntime cpu/nn/qlinearconv.cc)."""
    return _im2col_bytes(node, shapes[3], output) if len(shapes) > 3 else 0


@_rule("Conv")
def _conv(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...]) -> int:
    """A Conv on DequantizeLinear outputs runs as QLinearConv (onnxruntime's QDQ fusion); else 0 (module doc)."""
    producers = [graph.producer(tensor) for tensor in node.inputs[:2]]
    if len(shapes) < 2 or not all(key is not None and graph.node(key).op_type == "DequantizeLinear"
                                  for key in producers):
        return 0
    return _im2col_bytes(node, shapes[1], output)


def workspace_bytes(graph: Graph, node: Node) -> int:
    """Bytes of the scratch buffer onnxruntime's CPU kernel for `node` allocates (0 if none is known).

    Needs static input and output shapes (run_bounds checks them first); without them, 0.

    Raises:
        ShapeError: an Einsum equation that does not fit its operands.
    """
    rule = WORKSPACE_RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if rule is None or not node.outputs:
        return 0
    shapes: Shapes = []
    for name in [*node.inputs, node.outputs[0]]:
        shape = graph.shape(name) if name else ()
        if shape is None or not is_static_shape(shape) or any(dim < 0 for dim in shape):
            return 0
        shapes.append(tuple(shape))
    return rule(graph, node, shapes[:-1], shapes[-1])
