"""Switchable counting conventions: which non-convolution work is also counted as MACs.

segcost's MACs are the multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul (DESIGN).
Other tools also count some of the rest, each in its own way (thop and onnx-tool count bias
adds, BatchNorm, activations, pooling or resize work as MACs). `analyze --count bias,bn,...`
makes that explicit: a counted category adds its elementary operations — the documented
`flops` of its ops (`segcost ops`: BatchNorm 2 per element, Relu 1, bilinear Resize 7 per
output element; for bias, the bias adds of the MAC layers), and the part of a MAC layer's
flops that is such work (a fused attention's softmax is activation, a DeformConv's bilinear
sampling resize: each rule says which part is which) — so each category changes the total by
exactly its subtotal, which the report shows beside it. Each layer carries its split
(`flops_by_category`); an If/Loop/Scan layer's is its subgraphs'. `totals.macs` itself never
changes meaning: the counted total is reported separately.

Fixed conventions (not switchable), applied by segcost.analyzer.analyze: **params** are the
elements of the constants a layer reads as weights (DESIGN: weights, bias, BN statistics), each
counted once at its first such reader (analyzer.weights.is_weight): a floating-point constant
(float16/32/64, bfloat16, float8/6/4) read as data, or a quantized weight or bias read where an
op takes one (analyzer.weights.QUANTIZED_WEIGHTS, from the ONNX spec and onnxruntime's
ContribOperators.md: DequantizeLinear's x, QLinearConv's w and B, QLinearMatMul's a and b,
ConvInteger's w, MatMulInteger's A and B, QGemm's A, B and C, MatMulNBits' B, ...; int4/uint4
included). Integer and bool constants anywhere else are shapes, axes, pads, indices, counts or
masks — a Reshape target, Gather indices, HF BEiT's relative-position index table — and are not
params, nor are float inputs that configure an op (OPERATOR_SETTINGS: Clip's bounds, Resize's
scales, Pad's fill value); torch's sum(p.numel()) counts none of them, and two exports of one
module (legacy, dynamo) differ in them. Float constants an exporter makes up are float data and
count (a GroupNorm exported as InstanceNormalization's ones/zeros, GELU's 0.5). **weight_bytes**
are the bytes of those params as stored (by their dtype, DESIGN), not of every constant: it never
held the quantization parameters, and with shapes and index tables in it, params and weight bytes
would disagree about what a weight is (the file's size is another figure; the optimize growth
warning compares both, so it follows this definition too). A constant read
through forwarders (analyzer.weights.FORWARDING_OPS: Identity, DequantizeLinear, Cast, Transpose,
Reshape, Squeeze, Unsqueeze, Flatten of a constant) counts at the first node that reads the
forwarded value as a weight; the forwarders show 0 params and 0 activation bytes for it (an smp
export's `Conv_455 -> Identity -> Conv` bias is the Conv's), a DequantizeLinear's stored weight
is a weight whoever reads it. Scales and zero points (of QuantizeLinear/DequantizeLinear,
QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger and onnxruntime's QOperator ops:
analyzer.weights.QUANTIZATION_PARAMETERS) are quantization parameters: neither params nor weight
bytes, so a QDQ model's Conv holds its int8 weight (1 byte per element), as in the int8 report
(segcost.quant.footprint, whose int8 view lists the integer-stored float weights in
`info.stored_weights`). A forwarder whose output is a graph output keeps the constant. Weights
inside If/Loop/Scan subgraphs count (params and weight bytes) at the control-flow layer, once
whatever the trip count (an outer constant a subgraph reads is judged by its type).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from segcost.analyzer.layers import LayerTable, layer_column
from segcost.errors import InputError

if TYPE_CHECKING:   # annotations only: result.py imports this module to fill macs_by_convention
    from segcost.analyzer.result import AnalysisResult, LayerCost

# Category → the standard (ai.onnx) op types all of whose flops it holds; CONTRIB_CATEGORIES the same for
# onnxruntime's com.microsoft ops. Every op with flops and without MACs is in one, so the categories and
# 2·macs add up to the flops (tests/test_flop_totals.py walks the registry). "bias" holds the bias adds of the
# MAC layers (Conv, Gemm, ...); a MAC layer's other non-MAC work, and the part of a fused op that another op
# does unfused (SkipLayerNormalization's skip add), is in the category of the op it stands for (OpCost's
# category_flops: a fused attention's softmax in activation, its scale and mask adds in elementwise, a
# DeformConv's bilinear sampling in resize), and so is the work inside an If/Loop/Scan layer's subgraphs.
# activation: the activation ops and the transcendental functions they are built from (Exp, Log, Erf,
# trigonometric/hyperbolic); elementwise: arithmetic (Pow, Sqrt, Reciprocal too), rounding, comparisons,
# logic, bitwise ops, Where and (de)quantization; reduction: reductions along axes (Reduce*, ArgMax, TopK,
# CumSum, Col2Im's overlap sums) — pooling keeps the pooling ops only, as the tools that count it do.
CATEGORIES: dict[str, frozenset[str]] = {
    "bias": frozenset(),
    "bn": frozenset({"BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
                     "RMSNormalization", "SimplifiedLayerNormalization", "MeanVarianceNormalization",
                     "LpNormalization", "LRN"}),
    "activation": frozenset({"Relu", "LeakyRelu", "PRelu", "ThresholdedRelu", "Elu", "Celu", "Selu", "Softplus",
                             "Softsign", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu", "Mish",
                             "Softmax", "LogSoftmax", "Swish", "SwiGLU", "Shrink", "Exp", "Log", "Erf", "Sin",
                             "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"}),
    "pooling": frozenset({"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
                          "MaxRoiPool"}),
    "resize": frozenset({"Resize", "Upsample", "GridSample", "RoiAlign"}),
    "elementwise": frozenset({"Add", "Sub", "Mul", "Div", "Sum", "Mean", "Max", "Min", "Pow", "Sqrt", "Reciprocal",
                              "Abs", "Neg", "Sign", "Floor", "Ceil", "Round", "Mod", "Equal", "Greater", "Less",
                              "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf",
                              "Where", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
                              "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "RotaryEmbedding"}),
    "reduction": frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                            "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
                            "TopK", "Hardmax", "CumSum", "CumProd", "Col2Im"}),
}
CONTRIB_CATEGORIES: dict[str, frozenset[str]] = {   # com.microsoft (onnxruntime's ContribOperators.md)
    "bn": frozenset({"LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
                     "SkipSimplifiedLayerNormalization"}),
    "activation": frozenset({"Gelu", "BiasGelu", "FastGelu", "QuickGelu", "QLinearSigmoid", "QLinearLeakyRelu",
                             "QLinearSoftmax", "BiasSoftmax"}),
    "pooling": frozenset({"QLinearAveragePool", "QLinearGlobalAveragePool"}),
    "elementwise": frozenset({"QLinearAdd", "QLinearMul", "BiasAdd", "RotaryEmbedding"}),
}
CONTRIB_DOMAIN = "com.microsoft"


@dataclass
class ConventionTotals:
    """MACs under a chosen convention: the conv+gemm MACs plus the counted categories' subtotals."""

    counted: list[str]
    subtotals: dict[str, int]          # every category, counted or not (exact ints)
    conv_gemm_macs: int
    macs: int                          # conv_gemm_macs + the counted subtotals

    def to_dict(self) -> dict:
        return {"counted": self.counted, "subtotals": self.subtotals, "conv_gemm_macs": self.conv_gemm_macs,
                "macs": self.macs}


def parse_counted(text: str) -> list[str]:
    """ "bias,bn" / "all" / "none" → category names in CATEGORIES order; InputError names an unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(CATEGORIES)
    if names == ["none"] or not names:
        return []
    unknown = [name for name in names if name not in CATEGORIES]
    if unknown:
        raise InputError(f"--count: unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
                         f"(choose from {', '.join(CATEGORIES)}, all, none)")
    return [name for name in CATEGORIES if name in names]


_CATEGORY_OF_OP = {**{(domain, op_type): name for name, op_types in CATEGORIES.items() for op_type in op_types
                      for domain in ("", "ai.onnx")},
                   **{(CONTRIB_DOMAIN, op_type): name for name, op_types in CONTRIB_CATEGORIES.items()
                      for op_type in op_types}}


def op_category(domain: str, op_type: str) -> str | None:
    """The category of (domain, op_type) (Relu: activation), or None (MAC layers, data movement, custom ops)."""
    return _CATEGORY_OF_OP.get((domain, op_type))


def split_flops(op_type: str, domain: str, flops: int, bias_flops: int = 0,
                category_flops: Iterable[tuple[str, int]] = ()) -> tuple[tuple[str, int], ...]:
    """A layer's non-MAC `flops` by category: (category, flops) pairs in CATEGORIES order, none 0.

    `bias_flops` are in bias and each (category, flops) of `category_flops` in its category, as the
    layer's cost rule gives them (registry.OpCost); the rest is in the op type's category (op_category:
    all of a Relu's flops are activation, a SkipLayerNormalization's beyond its skip adds bn). A rule
    without MACs or with a category gives its parts that way; the rest of one in no category (a custom
    op's) would be in none, which tests/test_flop_totals.py refuses for every registered rule.

    Raises:
        ValueError: a name that is no category, or parts that add up to more than `flops` (a rule's error).
    """
    category = _CATEGORY_OF_OP.get((domain, op_type))
    if not bias_flops and not category_flops:
        return ((category, flops),) if flops and category is not None else ()
    parts = dict.fromkeys(CATEGORIES, 0)
    parts["bias"] = bias_flops
    for name, value in category_flops:
        if name not in parts:
            raise ValueError(f"{op_type}: {name!r} is no convention category ({', '.join(CATEGORIES)})")
        parts[name] += value
    rest = flops - sum(parts.values())
    if rest < 0:
        raise ValueError(f"{op_type}: the category parts {parts} add up to more than its {flops} flops")
    if category is not None:
        parts[category] += rest
    return tuple((name, value) for name, value in parts.items() if value)


def category_subtotals(layers: Iterable[LayerCost]) -> dict[str, int]:
    """Every category's flops (exact ints, 0 when none) summed over `layers` (their `flops_by_category`).

    A LayerTable that made no LayerCost objects is summed per distinct signature (its layer count
    times its ints: no Python code per layer).
    """
    subtotals = dict.fromkeys(CATEGORIES, 0)
    if isinstance(layers, LayerTable) and not layers.materialized:
        signatures = layers.signatures
        if all(type(value) is int for signature in signatures for _, value in signature.flops_by_category):
            for index, count in Counter(layers.signature_index).items():
                for name, value in signatures[index].flops_by_category:
                    subtotals[name] += count * value
            return subtotals
    for parts in layer_column(layers, "flops_by_category"):
        for name, value in parts.items():
            subtotals[name] += value
    return subtotals


def convention_totals(result: AnalysisResult, counted: list[str]) -> ConventionTotals:
    """The MACs with the `counted` categories' elementary ops added, and every category's subtotal."""
    subtotals = category_subtotals(result.layers)
    conv_gemm = result.totals.macs
    return ConventionTotals(counted, subtotals, conv_gemm, conv_gemm + sum(subtotals[name] for name in counted))


def counted_macs(layers: Iterable[LayerCost], counted: list[str]) -> list[int]:
    """Each layer's share of the counted total (`analyze --count`): its conv/gemm MACs plus its
    `flops_by_category` of the `counted` categories, so the list sums to convention_totals(...).macs."""
    macs = layer_column(layers, "macs")
    if not counted:
        return macs
    return [layer_macs + sum(parts.get(name, 0) for name in counted)
            for layer_macs, parts in zip(macs, layer_column(layers, "flops_by_category"))]


def convention_line(counted: list[str]) -> str:
    """The report header's one line on what the MAC total includes."""
    others = [name for name in CATEGORIES if name not in counted]
    line = "MACs = Conv/ConvTranspose/Gemm/MatMul multiply-accumulates"
    if counted:   # the layer and group rows stay conv/gemm; the "MACs with ... counted" total adds the rest
        line += " in each row; the counted total adds one per elementary op of: " + ", ".join(counted)
    if others:
        line += f"; not counted as MACs: {', '.join(others)}"
    return line + " (FLOPs = 2*conv/gemm MACs + every elementary op)"
