"""Pooling, reductions, ArgMax and Resize: window/neighbour operations, no MACs.

flops count one elementary op per element entering a reduction (compare or add) and
per-element interpolation arithmetic for Resize, as stated in each docstring.
"""

from __future__ import annotations

from math import prod

from segcost.analyzer.registry import SHAPE_UNKNOWN, ZERO_BY_CONVENTION, OpCost, OpView, cost_rule
from segcost.analyzer.rules.elementwise import per_element


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
    if shape is None or not all(isinstance(dim, int) for dim in shape):
        return OpCost(status=SHAPE_UNKNOWN)
    return OpCost(flops=prod(shape), kernel=tuple(shape[2:]))


@cost_rule("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "TopK")
def reduction(op: OpView) -> OpCost:
    """flops = input elements (one add/compare per element reduced)."""
    return global_pool(op)


_NEIGHBOURS_PER_AXIS = {"linear": 2, "bilinear": 2, "cubic": 4}


@cost_rule("Resize", "Upsample")
def resize(op: OpView) -> OpCost:
    """nearest: 0 (data movement); (bi)linear/cubic: 2·n^r − 1 per output element, n = 2|4, r = resized axes."""
    mode = op.attr("mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "nearest":
        return OpCost(status=ZERO_BY_CONVENTION)
    output_shape = op.output_shape(0)
    input_shape = op.input_shapes[0] if op.input_shapes else None
    if output_shape is None or input_shape is None or len(input_shape) != len(output_shape):
        return OpCost(status=SHAPE_UNKNOWN)
    resized_axes = sum(1 for before, after in zip(input_shape, output_shape) if before != after)
    neighbours = _NEIGHBOURS_PER_AXIS.get(mode, 2) ** resized_axes
    # a weighted sum of `neighbours` values: one multiply each, neighbours − 1 adds
    return per_element(op, 2 * neighbours - 1 if resized_axes else 0)
