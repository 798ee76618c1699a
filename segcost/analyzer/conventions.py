"""Switchable counting conventions: which non-convolution work is also counted as MACs.

segcost's MACs are the multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul (DESIGN).
Other tools also count some of the rest, each in its own way (thop and onnx-tool count bias
adds, BatchNorm, activations, pooling or resize work as MACs). `analyze --count bias,bn,...`
makes that explicit: a counted category adds its elementary operations — the documented
`flops` of its ops (`segcost ops`: BatchNorm 2 per element, Relu 1, bilinear Resize 7 per
output element; for bias, the bias adds of the MAC layers) — so each category changes the
total by exactly its subtotal, which the report shows beside it. `totals.macs` itself never
changes meaning: the counted total is reported separately.

Fixed conventions (not switchable), applied by segcost.analyzer.analyze: **params** are the
elements of constants a layer reads, each counted once at its first consumer. A constant read
through forwarders (analyzer.weights.FORWARDING_OPS: Identity, DequantizeLinear, Cast, Transpose,
Reshape, Squeeze, Unsqueeze, Flatten of a constant) counts — params and weight bytes, with
the forwarders' other constant inputs such as a Reshape's shape — at the first node that
reads the forwarded value, as its weight; the forwarders show 0 params and 0 activation
bytes for it (an smp export's `Conv_455 -> Identity -> Conv` bias is the Conv's). Scales and
zero points (of QuantizeLinear/DequantizeLinear, QLinearConv, QLinearMatMul, ConvInteger,
MatMulInteger and onnxruntime's QOperator ops: analyzer.weights.QUANTIZATION_PARAMETERS) are
quantization parameters: neither params nor weight bytes, so a QDQ model's Conv holds its
int8 weight (1 byte per element), as in the int8 report (segcost.quant.footprint). A
forwarder whose output is a graph output keeps the constant. Weights inside If/Loop/Scan
subgraphs count (params and weight bytes) at the control-flow layer, once whatever the trip
count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from segcost.analyzer.layers import LayerTable, layer_column
from segcost.errors import InputError

if TYPE_CHECKING:   # annotations only: result.py imports this module to fill macs_by_convention
    from segcost.analyzer.result import AnalysisResult, LayerCost

# Category → op types whose elementary operations it holds ("bias" is the MAC layers' bias adds).
CATEGORIES: dict[str, frozenset[str]] = {
    "bias": frozenset(),
    "bn": frozenset({"BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization"}),
    "activation": frozenset({"Relu", "LeakyRelu", "PRelu", "ThresholdedRelu", "Elu", "Celu", "Selu", "Softplus",
                             "Softsign", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu", "Mish",
                             "Softmax", "LogSoftmax"}),
    "pooling": frozenset({"MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}),
    "resize": frozenset({"Resize", "Upsample"}),
    "elementwise": frozenset({"Add", "Sub", "Mul", "Div", "Sum", "Mean", "Max", "Min", "Pow"}),
}


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


_CATEGORY_OF_OP = {op_type: name for name, op_types in CATEGORIES.items() for op_type in op_types}


def category_of(layer: LayerCost) -> str | None:
    return None if layer.domain else _CATEGORY_OF_OP.get(layer.op_type)


def convention_totals(result: AnalysisResult, counted: list[str]) -> ConventionTotals:
    subtotals = dict.fromkeys(CATEGORIES, 0)
    layers = result.layers   # read by column (analyzer.layers): an analysis' LayerTable makes no LayerCost for it
    if isinstance(layers, LayerTable) and not layers.materialized and _signature_subtotals(layers, subtotals):
        conv_gemm = result.totals.macs
        return ConventionTotals(counted, subtotals, conv_gemm, conv_gemm + sum(subtotals[name] for name in counted))
    subtotals["bias"] += sum(layer_column(layers, "bias_flops"))
    category_of_op = _CATEGORY_OF_OP.get
    for op_type, domain, flops in zip(layer_column(layers, "op_type"), layer_column(layers, "domain"),
                                      layer_column(layers, "flops")):   # category_of, inline
        category = None if domain else category_of_op(op_type)
        if category is not None:
            subtotals[category] += flops
    conv_gemm = result.totals.macs
    return ConventionTotals(counted, subtotals, conv_gemm, conv_gemm + sum(subtotals[name] for name in counted))


def _signature_subtotals(table: LayerTable, subtotals: dict[str, int]) -> bool:
    """Add each category's FLOPs (and the bias adds) to `subtotals` per distinct signature (its layer count
    times its ints: no Python code per layer); False, adding nothing, when a signature's numbers are not ints."""
    signatures = table.signatures
    if not all(type(signature.flops) is int and type(signature.bias_flops) is int for signature in signatures):
        return False
    category_of_op = _CATEGORY_OF_OP.get
    for index, count in Counter(table.signature_index).items():
        signature = signatures[index]
        subtotals["bias"] += count * signature.bias_flops
        category = None if signature.domain else category_of_op(signature.op_type)
        if category is not None:
            subtotals[category] += count * signature.flops
    return True


def convention_line(counted: list[str]) -> str:
    """The report header's one line on what the MAC total includes."""
    others = [name for name in CATEGORIES if name not in counted]
    line = "MACs = Conv/ConvTranspose/Gemm/MatMul multiply-accumulates"
    if counted:
        line += " + one per elementary op of: " + ", ".join(counted)
    if others:
        line += f"; not counted as MACs: {', '.join(others)}"
    return line + " (FLOPs = 2*conv/gemm MACs + every elementary op)"
