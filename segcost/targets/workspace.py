"""Scratch memory an onnxruntime CPU kernel allocates beyond its inputs and outputs, per op.

run_bounds bounds the tensors a graph names; some kernels allocate a temporary that is in no
shape of the graph, and that temporary can be far larger than the file or any tensor:
a 162-byte three-operand Einsum of 256x256 matrices asks onnxruntime for 16 GiB.
One small function per op, registered in WORKSPACE_RULES, returns that temporary's bytes
from the node's static input and output shapes; each cites the kernel it reads. Ops not
listed allocate nothing that grows beyond their outputs, as far as their kernels show.

Rules that read only input shapes (NonZero, Unique: outputs whose size is data) get `output`
None when the output shape is not static; the others then return 0.

Left out on purpose: float Conv's im2col buffer. MLAS (onnxruntime/core/mlas/lib/convolve.cpp,
MlasConvPrepare) splits the expansion into per-thread segments of a fixed working size, so
it does not grow with C·kh·kw·outH·outW (breaker7: a 64-channel 31x31 Conv at 256x256 peaks at
175 MB). A Conv between DequantizeLinear nodes is another matter: onnxruntime's QDQ fusion
(onnxruntime/core/optimizer/qdq_transformer) runs it as QLinearConv, whose im2col is whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from math import prod

from segcost.analyzer.rules.einsum import einsum_largest_intermediate
from segcost.ir import Graph, Node, is_static_shape, tensor_nbytes

__all__ = ["WORKSPACE_RULES", "typed_bytes", "workspace_bytes"]

Shapes = list[tuple[int, ...]]
Rule = Callable[[Graph, Node, Shapes, "tuple[int, ...] | None"], int]
WORKSPACE_RULES: dict[str, Rule] = {}
POINTER_BYTES = 8
EINSUM_COPIES = 2   # a pairwise step's product and its permuted copy (measured, see _einsum)


def _rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        WORKSPACE_RULES.update(dict.fromkeys(op_types, function))
        return function
    return register


def typed_bytes(graph: Graph, tensor: str, elements: int) -> int:
    """Bytes of `elements` elements of `tensor`'s type, packed (segcost.ir.tensor_nbytes); 1 byte each for an
    unknown type (the one rule for run_bounds' tensor sizes and the scratch rules here)."""
    return tensor_nbytes(graph.dtype(tensor), elements) or elements


@_rule("Einsum")
def _einsum(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """2 × the largest pairwise partial result (onnxruntime cpu/math/einsum_utils/, typed processor).

    Twice: the product and the permuted copy made for the next step. Measured with onnxruntime 1.32
    on 'ab,cd,bd->ac': n=96 (a 324 MiB partial result) peaks at 742 MiB RSS, n=128 (1 GiB) at 2.12 GiB.
    """
    equation = node.attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    if not isinstance(equation, str):
        return 0
    largest = einsum_largest_intermediate(equation, shapes, f"node {node.name!r} (Einsum)")
    return typed_bytes(graph, node.outputs[0], EINSUM_COPIES * largest)


@_rule("ConvTranspose")
def _conv_transpose(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """col2im buffer (C_out/group)·prod(kernel)·prod(input spatial) elements (onnxruntime cpu/nn/conv_transpose.cc)."""
    if len(shapes) < 2 or len(shapes[0]) < 3 or len(shapes[1]) < 3:
        return 0
    return typed_bytes(graph, node.outputs[0], prod(shapes[1][1:]) * prod(shapes[0][2:]))


def _pointwise(node: Node, weight: tuple[int, ...]) -> bool:
    """A 1x1 kernel at stride 1 without padding: the kernels read the input in place."""
    return prod(weight[2:]) == 1 and set(node.attr("strides") or [1]) == {1} and not any(node.attr("pads") or [0]) \
        and node.attr("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET", "VALID", b"VALID")


def _im2col_bytes(node: Node, weight: tuple[int, ...], output: tuple[int, ...] | None) -> int:
    """uint8 im2col of (C/group)·prod(kernel) rows by prod(output spatial) columns (0 for a pointwise conv).

    onnxruntime cpu/nn/conv_integer.cc (col_buffer_size = kernel_dim · output_image_size) and
    cpu/nn/qlinearconv.cc (the same; a depthwise QLinearConv keeps one pointer per kernel tap and
    output pixel instead).
    """
    if output is None or len(weight) < 3 or len(output) < 3 or _pointwise(node, weight):
        return 0
    group = int(node.attr("group", 1) or 1)
    if group > 1 and weight[1] == 1 and weight[0] == group:   # depthwise: an indirection buffer
        return POINTER_BYTES * prod(weight[2:]) * prod(output[2:])
    return prod(weight[1:]) * prod(output[2:]) * (group if len(weight) > 4 else 1)


@_rule("ConvInteger")
def _conv_integer(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """uint8 im2col buffer (C/group)·prod(kernel)·prod(output spatial) (onnxruntime cpu/nn/conv_integer.cc)."""
    return _im2col_bytes(node, shapes[1], output) if len(shapes) > 1 else 0


@_rule("QLinearConv")
def _qlinear_conv(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """uint8 im2col buffer, as ConvInteger (onnxruntime cpu/nn/qlinearconv.cc)."""
    return _im2col_bytes(node, shapes[3], output) if len(shapes) > 3 else 0


@_rule("Conv")
def _conv(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """A Conv on DequantizeLinear outputs runs as QLinearConv (onnxruntime's QDQ fusion); else 0 (module doc)."""
    producers = [graph.producer(tensor) for tensor in node.inputs[:2]]
    if len(shapes) < 2 or not all(key is not None and graph.node(key).op_type == "DequantizeLinear"
                                  for key in producers):
        return 0
    return _im2col_bytes(node, shapes[1], output)


def _text(node: Node, name: str, default: str) -> str:
    value = node.attr(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _image_dims(shape: tuple[int, ...], output: tuple[int, ...]) -> tuple[int, int, int, int, int] | None:
    """(channels, H_in, W_in, H_out, W_out) of a 2-D image or a 4-D batch of images (NCHW, or NHWC when the
    second dim is resized), as onnxruntime's Resize kernels read them (cpu/tensor/upsample.cc BaseCompute)."""
    if len(shape) == 2:
        return 1, shape[0], shape[1], output[0], output[1]
    if len(shape) != 4:
        return None
    if shape[1] == output[1]:   # NCHW: N and C not resized
        return shape[1], shape[2], shape[3], output[2], output[3]
    return shape[3], shape[1], shape[2], output[1], output[2]   # NHWC


CUBIC_CACHE_ENTRY_BYTES = 48   # an unordered_map<int64_t, float> node (a 32-byte block) + its bucket pointers


@_rule("Resize", "Upsample")
def _resize(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """antialias: the C·H_in·W_out first-pass image; cubic: a per-channel cache of W_out·(H_in + 3) 1-D results.

    onnxruntime cpu/tensor/upsample_antialias.h (UpsampleBaseAntiAlias: image_temp_buffer of
    input_height·output_width·num_channels elements, the horizontal pass, reused per batch item)
    and cpu/tensor/upsample.cc (ResizeBiCubic: coeff_to_1Dinterpolation_map, one std::unordered_map
    entry per (x, row) it interpolates — each output column's x with the rows y−1 … y+2 of every
    input row, H_in + 3 of them — cleared per channel). nearest and (bi/tri)linear keep only
    per-axis index and weight tables (SetupUpsampleBilinear: 16·(H_out + W_out) bytes), counted as 0;
    so is antialiased trilinear (3-D volumes), which is not modelled here.
    Measured with onnxruntime 1.32 on a 1024² → 2048² float image: cubic 90.7 MB beyond the
    output (2,103,296 entries: 43 bytes each, the same per channel at C = 3), antialias linear
    8.4 MB = 1024·2048·4 (25.4 MB at C = 3).
    """
    if output is None or not shapes or len(shapes[0]) != len(output):
        return 0
    dims = _image_dims(shapes[0], output)
    if dims is None:
        return 0
    channels, height_in, _, _, width_out = dims
    mode = _text(node, "mode", "nearest")
    if int(node.attr("antialias", 0) or 0) and mode != "nearest":
        return typed_bytes(graph, node.inputs[0], channels * height_in * width_out)
    if mode == "cubic":
        return CUBIC_CACHE_ENTRY_BYTES * width_out * (height_in + 3)
    return 0


GRID_PLAN_BYTES = {4: 56, 8: 72}   # BilinearSamplePlan2D<float|double>: 4 int64 indices, 4 weights, a mask byte


@_rule("GridSample")
def _grid_sample(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """2-D bilinear, zeros padding, align_corners 0: a 56-byte sampling plan per grid point (H_out·W_out).

    onnxruntime cpu/tensor/grid_sample.cc (TryRunBilinearZerosFastPath2D: a std::vector of
    BilinearSamplePlan2D — x1, x2, y1, y2 as int64, four weights, a mask — one per output pixel,
    reused over the batch); every other mode, padding and the 3-D case sample in place (0).
    Measured with onnxruntime 1.32: a 2048×2048 grid needs 234.7 MB beyond the output (56.0 bytes a point).
    """
    if len(shapes) < 2 or len(shapes[1]) != 4 or int(node.attr("align_corners", 0) or 0):
        return 0
    if _text(node, "mode", "linear") not in ("linear", "bilinear") or _text(node, "padding_mode", "zeros") != "zeros":
        return 0
    plan = GRID_PLAN_BYTES.get(typed_bytes(graph, node.inputs[0], 1), GRID_PLAN_BYTES[8])
    return plan * shapes[1][1] * shapes[1][2]


TOPK_PARALLEL_WORK = 128 * 1024   # onnxruntime splits TopK rows over threads per this much input·k
INDEX_BYTES = 8   # int64_t


@_rule("TopK")
def _top_k(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """8 bytes per element of the axis per thread when neither k = 1 nor a heap is used (k ≥ 4, log k ≥ 0.725·log n).

    onnxruntime cpu/math/top_k.cc (FindTopKElements: k = 1 scans; a heap of k indices when k < 4
    or log2(k)/log2(n) < 0.725; otherwise each thread's data_holder, a std::vector<int64_t> of
    the n = axis-length indices, for nth_element). Threads: min(intra-op threads, rows,
    input elements·k / 131072) — this machine's CPU count bounds the intra-op threads.
    Measured with onnxruntime 1.32: k = 200,000 of n = 10,000,000 (one row) needs 80.1 MB.
    """
    if output is None or not shapes or not shapes[0]:
        return 0
    shape = shapes[0]
    axis = int(node.attr("axis", -1))
    axis = axis + len(shape) if axis < 0 else axis
    if not 0 <= axis < len(shape):
        return 0
    n, k = shape[axis], output[axis]
    if k < 4 or n <= 1 or math.log2(k) / math.log2(n) < 0.725:
        return 0
    rows = prod(shape[:axis])
    threads = max(min(os.cpu_count() or 1, rows, prod(shape) * k // TOPK_PARALLEL_WORK), 1)
    return threads * n * INDEX_BYTES


SHAPE_OF_DATA = frozenset({"NonZero", "Unique"})   # rules that need no output shape (module docstring)


@_rule("NonZero")
def _non_zero(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """8·rank bytes per input element: room for every element's coordinates, reserved before the scan.

    onnxruntime cpu/tensor/nonzero_op.cc (non_zero_indices_buffer.reserve(X.Size()·rank) of
    int64_t, transposed into the output after); a scalar reserves one. Measured with onnxruntime
    1.32: an all-zero 8192×8192 bool tensor grows the process's virtual size by 1.0 GB (the reserve
    is allocated, not touched — an address-space limit still refuses it).
    """
    if not shapes:
        return 0
    shape = shapes[0]
    return INDEX_BYTES * max(len(shape), 1) * prod(shape)


UNIQUE_ENTRY_BYTES = 8 + 36 + 64 + 32   # per element: inverse index, indices vector growth, map node, first index


@_rule("Unique")
def _unique(graph: Graph, node: Node, shapes: Shapes, output: tuple[int, ...] | None) -> int:
    """At most 140 bytes per input element (all distinct); with `axis`, per slice plus the slices' copies.

    onnxruntime cpu/tensor/unique.cc (Unique::ComputeImpl): inverse_index reserves 8·E bytes;
    indices, a std::vector<std::vector<int64_t>>, reserves E/2 entries of 24 bytes and doubles to
    E when more are distinct (36·E while both live); std::map holds one node per distinct value
    (a 64-byte block) and each indices entry its first index (a 32-byte block). With `axis`,
    the map keys are copies of the slices (E·itemsize) and the entries count slices, the
    reserves still elements. Measured with onnxruntime 1.32: 4,000,000 random floats (3,892,803
    distinct) need 531 MB beyond the outputs; the bound here is 560 MB.
    """
    if not shapes or not shapes[0]:
        return 0
    shape = shapes[0]
    elements = prod(shape)
    axis = node.attr("axis")
    if axis is None:
        return UNIQUE_ENTRY_BYTES * elements
    axis = int(axis) + len(shape) if int(axis) < 0 else int(axis)
    if not 0 <= axis < len(shape):
        return 0
    slices = shape[axis]
    indices = 24 * (elements // 2) + (24 * elements if slices > elements // 2 else 0)   # reserve, then doubled
    return 8 * elements + indices + (64 + 32) * slices + typed_bytes(graph, node.inputs[0], elements)


def workspace_bytes(graph: Graph, node: Node) -> int:
    """Bytes of the scratch buffer onnxruntime's CPU kernel for `node` allocates (0 if none is known).

    Needs static input shapes (run_bounds checks them first), and for most rules a static
    output shape; without them, 0.

    Raises:
        ShapeError: an Einsum equation that does not fit its operands.
    """
    rule = WORKSPACE_RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if rule is None or not node.outputs:
        return 0
    shapes: Shapes = []
    for name in node.inputs:
        shape = _static(graph, name) if name else ()
        if shape is None:
            return 0
        shapes.append(shape)
    output = _static(graph, node.outputs[0]) if node.outputs[0] else None
    if output is None and node.op_type not in SHAPE_OF_DATA:
        return 0
    return rule(graph, node, shapes, output)


def _static(graph: Graph, name: str) -> tuple[int, ...] | None:
    shape = graph.shape(name)
    if shape is None or not is_static_shape(shape) or any(dim < 0 for dim in shape):
        return None
    return tuple(shape)
