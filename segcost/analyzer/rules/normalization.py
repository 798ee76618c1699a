"""Normalizations and GELU: per-element flops, counted op by op from each op's formula.

For an input of E elements normalized in R independent rows (LayerNormalization over the
axes from `axis` on, GroupNormalization over each group, InstanceNormalization over each
channel), the statistics cost per element: a sum for the mean, the subtraction, a square,
a sum for the variance, and the multiplication by 1/σ (5); per row: mean ÷ D, variance ÷ D,
+ ε and one reciprocal square root (4). The affine scale and bias add one each per element.
No MACs: the multiply by γ is not accumulated (fvcore and onnx-tool agree on "no MACs";
fvcore counts 4–5 "flops" per element for its norms, which this refines).

GELU (ONNX Gelu-20): erf form 0.5·x·(1 + erf(x/√2)) = 5 per element (÷√2, erf, +1, ·x,
·0.5); tanh form 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) = 9 (x³ as two multiplies,
·0.044715, +x, ·√(2/π), tanh, +1, ·x, ·0.5).
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

from segcost.analyzer.registry import SHAPE_UNKNOWN, OpCost, OpView, cost_rule
from segcost.analyzer.rules.elementwise import per_element
from segcost.errors import ShapeError
from segcost.ir import is_static_shape
from segcost.ir.opforms import normalize_axes, normalize_axis

MICROSOFT = ("com.microsoft",)
STATS_PER_ELEMENT = 5    # sum, subtract mean, square, sum, multiply by 1/σ
STATS_PER_ROW = 4        # mean ÷ D, variance ÷ D, + ε, 1/√
RMS_PER_ELEMENT = 3      # square, sum, multiply by 1/rms
RMS_PER_ROW = 3          # ÷ D, + ε, 1/√
GELU_ERF = 5
GELU_TANH = 9


def _rows_from_axis(op: OpView, shape: tuple[int, ...], default_axis: int) -> int:
    axis = normalize_axis(op.attr("axis", default_axis), len(shape), f"{op.where} attribute axis")
    return prod(shape[:axis])


def _rows_over_axis(shape: tuple[int, ...], axis: int = -1) -> int:
    return prod(shape) // shape[axis] if shape[axis] else 0


def _norm_cost(op: OpView, rows_of: Callable[[tuple[int, ...]], int], per_element: int, per_row: int,
               min_rank: int = 0, adds_per_element: int = 0) -> OpCost:
    """flops = (adds_per_element + per_element)·E + per_row·R for op's static input 0 (E elements, R =
    rows_of(shape) rows); the adds (a fused skip connection's and bias's, as Add) are category elementwise.

    SHAPE_UNKNOWN when input 0 has a symbolic/unknown dim or rank < min_rank.
    """
    shape = op.input_shapes[0] if op.input_shapes else None
    if not is_static_shape(shape) or len(shape) < min_rank or min(shape, default=0) < 0:
        return OpCost(status=SHAPE_UNKNOWN)
    adds = adds_per_element * prod(shape)
    return OpCost(flops=adds + per_element * prod(shape) + per_row * rows_of(shape),
                  category_flops=(("elementwise", adds),) if adds else ())


@cost_rule("LayerNormalization")
@cost_rule("LayerNormalization", domains=MICROSOFT)
def layer_normalization(op: OpView) -> OpCost:
    """flops = 6·E + 4·R (+E with bias B): E elements in R = prod(shape[:axis]) rows; stats 5/elem, 4/row, ·γ."""
    affine = 1 + (1 if op.has_input(2) else 0)
    return _norm_cost(op, lambda shape: _rows_from_axis(op, shape, -1), STATS_PER_ELEMENT + affine, STATS_PER_ROW)


@cost_rule("RMSNormalization")
@cost_rule("SimplifiedLayerNormalization")
@cost_rule("SimplifiedLayerNormalization", domains=MICROSOFT)
def rms_normalization(op: OpView) -> OpCost:
    """flops = 4·E + 3·R: x², sum, ·(1/rms), ·γ per element; ÷D, +ε, 1/√ per row (R = prod(shape[:axis]))."""
    return _norm_cost(op, lambda shape: _rows_from_axis(op, shape, -1), RMS_PER_ELEMENT + 1, RMS_PER_ROW)


@cost_rule("SkipLayerNormalization", domains=MICROSOFT)
def skip_layer_normalization(op: OpView) -> OpCost:
    """flops = E (x + skip) + E if bias (adds: elementwise) + LayerNormalization's 6·E + 4·R (+E with beta), R = E/H."""
    adds = 1 + (1 if op.has_input(4) else 0)
    affine = 1 + (1 if op.has_input(3) else 0)
    return _norm_cost(op, _rows_over_axis, STATS_PER_ELEMENT + affine, STATS_PER_ROW, adds_per_element=adds)


@cost_rule("SkipSimplifiedLayerNormalization", domains=MICROSOFT)
def skip_simplified_layer_normalization(op: OpView) -> OpCost:
    """flops = E (x + skip) + E if bias (both elementwise) + RMS normalization's 4·E + 3·R, R = E / hidden."""
    adds = 1 + (1 if op.has_input(3) else 0)
    return _norm_cost(op, _rows_over_axis, RMS_PER_ELEMENT + 1, RMS_PER_ROW, adds_per_element=adds)


@cost_rule("GroupNormalization")
def group_normalization(op: OpView) -> OpCost:
    """flops = 7·E + 4·R, R = N·num_groups rows (stats 5/elem, 4/row; ·γ and +β per element)."""
    return _norm_cost(op, lambda shape: shape[0] * int(op.attr("num_groups")), STATS_PER_ELEMENT + 2, STATS_PER_ROW,
                      min_rank=2)


@cost_rule("InstanceNormalization")
def instance_normalization(op: OpView) -> OpCost:
    """flops = 7·E + 4·R, R = N·C rows (each channel of each image; ·γ and +β per element)."""
    return _norm_cost(op, lambda shape: shape[0] * shape[1], STATS_PER_ELEMENT + 2, STATS_PER_ROW, min_rank=2)


@cost_rule("MeanVarianceNormalization")
def mean_variance_normalization(op: OpView) -> OpCost:
    """flops = 5·E + 3·R, R = E / prod(shape[axes]) (axes default [0, 2, 3]; no ε in its formula)."""
    def rows(shape: tuple[int, ...]) -> int:
        axes = normalize_axes(op.attr("axes", [0, 2, 3]), len(shape), f"{op.where} attribute axes")
        reduced = prod(shape[axis] for axis in axes)
        return prod(shape) // reduced if reduced else 0
    return _norm_cost(op, rows, STATS_PER_ELEMENT, STATS_PER_ROW - 1)


@cost_rule("LpNormalization")
def lp_normalization(op: OpView) -> OpCost:
    """flops = 3·E + R for p=2 (x², sum, ÷ per element; √ per row), 3·E for p=1 (|x|, sum, ÷)."""
    def rows(shape: tuple[int, ...]) -> int:
        p = int(op.attr("p", 2))
        if p not in (1, 2):
            raise ShapeError(f"{op.where}: attribute p = {p} must be 1 or 2")
        axis = normalize_axis(op.attr("axis", -1), len(shape), f"{op.where} attribute axis")
        return _rows_over_axis(shape, axis) if p == 2 else 0
    return _norm_cost(op, rows, 3, 1)


@cost_rule("Gelu")
def gelu(op: OpView) -> OpCost:
    """flops = 5 per element (erf form: ÷√2, erf, +1, ·x, ·½); 9 with approximate="tanh"."""
    approximate = op.operand("approximate").value or "none"
    return per_element(op, GELU_TANH if approximate == "tanh" else GELU_ERF)


@cost_rule("Gelu", domains=MICROSOFT)
def ms_gelu(op: OpView) -> OpCost:
    """flops = 5 per element (com.microsoft Gelu is the erf form)."""
    return per_element(op, GELU_ERF)


@cost_rule("BiasGelu", domains=MICROSOFT)
def bias_gelu(op: OpView) -> OpCost:
    """flops = 6 per element (bias add, category elementwise, + the erf-form Gelu's 5)."""
    return with_adds(per_element(op, 1 + GELU_ERF), 1, 1 + GELU_ERF)


@cost_rule("FastGelu", domains=MICROSOFT)
def fast_gelu(op: OpView) -> OpCost:
    """flops = 9 per element (tanh-form Gelu), 10 with the optional bias input (its add: category elementwise)."""
    adds = 1 if op.has_input(1) else 0
    return with_adds(per_element(op, GELU_TANH + adds), adds, GELU_TANH + adds)


def with_adds(cost: OpCost, adds: int, per_element: int) -> OpCost:
    """`cost` of `per_element` flops per element, `adds` of them per element (a fused bias add) elementwise."""
    part = cost.flops // per_element * adds if per_element else 0
    return cost._replace(category_flops=(("elementwise", part),)) if part else cost


@cost_rule("QuickGelu", domains=MICROSOFT)
def quick_gelu(op: OpView) -> OpCost:
    """flops = 6 per element (x·sigmoid(α·x): ·α, sigmoid's 4, ·x)."""
    return per_element(op, 6)


@cost_rule("Mish")
def mish(op: OpView) -> OpCost:
    """flops = 8 per output element (x·tanh(softplus(x)), counted as ~8 elementary ops)."""
    return per_element(op, 8)


def _lrn_window_adds(channels: int, size: int) -> int:
    """Σ_c (terms − 1) over the channels, terms = the channels in c's window (ONNX LRN: clipped at 0 and C − 1)."""
    before, after = (size - 1) // 2, -(-(size - 1) // 2)
    return sum(min(channels - 1, c + after) - max(0, c - before) for c in range(channels))


@cost_rule("LRN", pure=True)
def lrn(op: OpView) -> OpCost:
    """flops = 5·E + (E/C)·Σ_c(window_c − 1): x², window sum, ·α/size, +bias, ^β, ÷ (window clipped at the edges)."""
    shape = op.input_shapes[0] if op.input_shapes else None
    size = int(op.attr("size", 0))
    if size <= 0:
        raise ShapeError(f"{op.where}: attribute size = {size} must be positive")
    if not is_static_shape(shape) or len(shape) < 2 or min(shape) < 0:
        return OpCost(status=SHAPE_UNKNOWN)
    positions = prod(shape) // shape[1] if shape[1] else 0
    return OpCost(flops=5 * prod(shape) + positions * _lrn_window_adds(shape[1], size))
