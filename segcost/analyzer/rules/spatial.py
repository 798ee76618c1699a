"""Pooling, reductions, ArgMax and Resize: window/neighbour operations, no MACs.

flops count one elementary op per element entering a reduction (compare or add) and
per-element interpolation arithmetic for Resize, as stated in each docstring.
"""

from __future__ import annotations

from math import prod

from segcost.analyzer.registry import SHAPE_UNKNOWN, ZERO_BY_CONVENTION, OpCost, OpView, cost_rule
from segcost.analyzer.rules.elementwise import per_element
from segcost.errors import ShapeError
from segcost.ir import is_static_shape
from segcost.ir.opforms import ABSENT, constant_value, normalize_axes, normalize_axis, resize_output_shape


def _window(op: OpView) -> tuple[int, ...]:
    return tuple(int(k) for k in op.attr("kernel_shape") or ())


@cost_rule("MaxPool", "LpPool")
def max_pool(op: OpView) -> OpCost:
    """flops = prod(kernel) per output element (one compare per window element)."""
    kernel = _window(op)
    cost = per_element(op, prod(kernel))
    return OpCost(flops=cost.flops, status=cost.status, kernel=kernel,
                  stride=tuple(op.attr("strides") or (1,) * len(kernel)))


@cost_rule("AveragePool")
def average_pool(op: OpView) -> OpCost:
    """flops = prod(kernel) per output element (k−1 adds + 1 divide)."""
    return max_pool(op)


@cost_rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def global_pool(op: OpView) -> OpCost:
    """flops = input elements (one add/compare per input element; the final divide is free)."""
    shape = op.input_shapes[0] if op.input_shapes else None
    if not is_static_shape(shape):
        return OpCost(status=SHAPE_UNKNOWN)
    return OpCost(flops=prod(shape), kernel=tuple(shape[2:]))


REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


@cost_rule(*REDUCE_OPS)
def reduction(op: OpView) -> OpCost:
    """flops = input elements (one add/compare per element reduced); 0 when no axes and noop_with_empty_axes=1."""
    shape = op.input_shapes[0] if op.input_shapes else None
    axes = op.operand("axes")  # an attribute before opset 13 (ReduceSum) / 18 (the others), then input #1
    if axes.known and shape is not None:
        normalize_axes(axes.ints() or (), len(shape), f"{op.where} axes")
    no_axes = axes.source == ABSENT or (axes.known and not axes.ints())
    if no_axes and op.attr("noop_with_empty_axes", 0):
        return OpCost(status=ZERO_BY_CONVENTION)  # the input passes through unchanged
    return global_pool(op)


@cost_rule("ArgMax", "ArgMin")
def arg_reduction(op: OpView) -> OpCost:
    """flops = input elements (one compare per element along the axis; negative axis counts from the back)."""
    shape = op.input_shapes[0] if op.input_shapes else None
    if shape is not None:
        normalize_axis(op.attr("axis", 0), len(shape), f"{op.where} attribute axis")
    return global_pool(op)


@cost_rule("TopK")
def top_k(op: OpView) -> OpCost:
    """flops = input elements (one compare per element along the axis)."""
    shape = op.input_shapes[0] if op.input_shapes else None
    if shape is not None:
        axis = normalize_axis(op.attr("axis", -1), len(shape), f"{op.where} attribute axis")
        k, size = op.operand("k").scalar(), shape[axis]  # k: an attribute before opset 10, then input #1
        if k is not None and isinstance(size, int) and k > size:
            raise ShapeError(f"{op.where}: k = {k} exceeds the {size} elements of axis {axis}")
    return global_pool(op)


@cost_rule("Hardmax")
def hardmax(op: OpView) -> OpCost:
    """flops = input elements (one compare per element along the axis; the one-hot write is free)."""
    shape = op.input_shapes[0] if op.input_shapes else None
    axis = op.operand("axis").scalar()  # default 1 before opset 13, -1 from 13
    if shape is not None and axis is not None:
        normalize_axis(int(axis), len(shape), f"{op.where} attribute axis")
    return global_pool(op)


@cost_rule("CumSum", "CumProd")
def cumulative(op: OpView) -> OpCost:
    """flops = (E / L)·(L − 1) adds/multiplies, L − 2 per row when exclusive (L = length of the axis)."""
    shape = op.input_shapes[0] if op.input_shapes else None
    axis_value = constant_value(op.graph, op.node.inputs[1]) if op.graph is not None and op.has_input(1) else None
    if not is_static_shape(shape) or axis_value is None or axis_value.size != 1:
        return OpCost(status=SHAPE_UNKNOWN)   # the axis is computed at run time: the row length is unknown
    if not shape:
        return OpCost(status=ZERO_BY_CONVENTION)
    axis = normalize_axis(int(axis_value.reshape(-1)[0]), len(shape), f"{op.where} input axis")
    length = shape[axis]
    per_row = max(length - (2 if op.attr("exclusive", 0) else 1), 0)
    return OpCost(flops=(prod(shape) // length) * per_row if length else 0)


_NEIGHBOURS_PER_AXIS = {"linear": 2, "bilinear": 2, "cubic": 4}


@cost_rule("Resize", "Upsample")
def resize(op: OpView) -> OpCost:
    """nearest: 0 (data movement); (bi)linear/cubic: 2·n^r − 1 per output element, n = 2|4, r = resized axes."""
    mode = op.operand("mode").value or "nearest"
    input_shape = op.input_shapes[0] if op.input_shapes else None
    output_shape: tuple[int, ...] | None = None
    if op.graph is not None and is_static_shape(input_shape):
        # scales/sizes/roi in the form of the opset (Upsample-7 attribute ... Resize-18 axes)
        output_shape = resize_output_shape(op.graph, op.key, input_shape)
    if output_shape is None:
        output_shape = op.output_shape(0)
    if mode == "nearest":
        return OpCost(status=ZERO_BY_CONVENTION, output_shape=output_shape)
    if output_shape is None or input_shape is None or len(input_shape) != len(output_shape):
        return OpCost(status=SHAPE_UNKNOWN)
    resized_axes = sum(1 for before, after in zip(input_shape, output_shape) if before != after)
    neighbours = _NEIGHBOURS_PER_AXIS.get(mode, 2) ** resized_axes
    # a weighted sum of `neighbours` values: one multiply each, neighbours − 1 adds
    flops_per_element = 2 * neighbours - 1 if resized_axes else 0
    return OpCost(flops=flops_per_element * prod(output_shape), output_shape=output_shape)


# GridSample: "bilinear"/"bicubic" (opset 16) are "linear"/"cubic" from opset 20
_GRID_NEIGHBOURS = {"nearest": 0, "linear": 2, "bilinear": 2, "cubic": 4, "bicubic": 4}


@cost_rule("GridSample")
def grid_sample(op: OpView) -> OpCost:
    """flops = (2·n^r − 1) per output element (n = 2 linear, 4 cubic, 0 nearest) + 2·r per grid point (unnormalize)."""
    x_shape, grid_shape = op.input_shape(0), op.input_shape(1)
    rank = len(x_shape) - 2
    if rank < 1 or len(grid_shape) != rank + 2 or grid_shape[-1] != rank or grid_shape[0] != x_shape[0]:
        raise ShapeError(f"{op.where}: grid {list(grid_shape)} does not sample the {rank}-D input {list(x_shape)}")
    output_shape = (x_shape[0], x_shape[1], *grid_shape[1:-1])
    mode = op.attr("mode", "linear")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    neighbours = _GRID_NEIGHBOURS.get(mode, 2) ** rank
    # interpolation: a weighted sum of `neighbours` values, as Resize; the grid's [-1, 1]
    # coordinates are mapped to pixels once per grid point and axis (a multiply and an add)
    interpolation = (2 * neighbours - 1) * prod(output_shape) if neighbours else 0
    return OpCost(flops=interpolation + 2 * rank * prod(grid_shape[:-1]), output_shape=output_shape)


@cost_rule("AffineGrid", pure=True)
def affine_grid(op: OpView) -> OpCost:
    """MACs = N·prod(size[2:])·r·(r+1): theta (N, r, r+1) times each homogeneous grid point, a batched MatMul."""
    theta = op.input_shape(0)
    output = op.output_shape(0)   # (N, *size[2:], r), from the constant size input
    rank = theta[1] if len(theta) == 3 else 0
    if rank not in (2, 3) or theta[2] != rank + 1:
        raise ShapeError(f"{op.where}: theta {list(theta)} is neither (N, 2, 3) nor (N, 3, 4)")
    if output is None:
        return OpCost(status=SHAPE_UNKNOWN)
    return OpCost(macs=prod(output[:-1]) * rank * (rank + 1), kind="other", output_shape=output)


_COL2IM_MAX_PAIRS = 1 << 22  # (block, offset) pairs walked per axis; a real image has far fewer


def _col2im_axis(image: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> tuple[int, int]:
    """(block values landing inside the image, image positions covered) along one axis."""
    extent = dilation * (kernel - 1) + 1
    blocks = (image + pad_begin + pad_end - extent) // stride + 1
    if blocks * kernel > _COL2IM_MAX_PAIRS:
        raise ShapeError(f"Col2Im: {blocks} blocks of {kernel} along an axis are too many to count")
    positions = [block * stride + offset * dilation - pad_begin for block in range(blocks) for offset in range(kernel)]
    inside = [position for position in positions if 0 <= position < image]
    return len(inside), len(set(inside))


@cost_rule("Col2Im")
def col2im(op: OpView) -> OpCost:
    """flops = N·C·(Π values landing − Π positions covered, per axis): one add per overlapping block value."""
    x_shape = op.input_shape(0)
    image = constant_value(op.graph, op.node.inputs[1]) if op.graph is not None else None
    block = constant_value(op.graph, op.node.inputs[2]) if op.graph is not None else None
    if image is None or block is None:
        return OpCost(status=SHAPE_UNKNOWN)
    image_shape, block_shape = [int(v) for v in image.reshape(-1)], [int(v) for v in block.reshape(-1)]
    rank = len(image_shape)
    strides = list(op.attr("strides") or [1] * rank)
    dilations = list(op.attr("dilations") or [1] * rank)
    pads = list(op.attr("pads") or [0] * (2 * rank))
    if len(x_shape) != 3 or len(block_shape) != rank or prod(block_shape) <= 0 or x_shape[1] % prod(block_shape):
        raise ShapeError(f"{op.where}: input {list(x_shape)} is not [N, C·prod(block_shape {block_shape}), L]")
    landing = covered = 1
    for axis in range(rank):
        values, positions = _col2im_axis(image_shape[axis], block_shape[axis], strides[axis], dilations[axis],
                                         pads[axis], pads[axis + rank])
        landing, covered = landing * values, covered * positions
    channels = x_shape[1] // prod(block_shape)
    return OpCost(flops=x_shape[0] * channels * (landing - covered), kernel=tuple(block_shape),
                  stride=tuple(strides), output_shape=(x_shape[0], channels, *image_shape))
