"""onnxruntime's com.microsoft fused and QOperator forms (what ORT_ENABLE_EXTENDED and
`onnxruntime.quantization` with QuantFormat.QOperator write into a saved model).

Each counts as the standard op it fuses or quantizes (DESIGN: "MACs are counted for ... their
fused/quantized forms"): FusedGemm/QGemm as Gemm, FusedMatMul/MatMulIntegerToFloat/
DynamicQuantizeMatMul as MatMul, QLinearAdd as Add. The (de)quantization arithmetic inside a
QLinear* op is not counted, as for the standard QLinearConv/QLinearMatMul. Input positions
and attributes are those of onnxruntime's docs/ContribOperators.md. FusedConv is in conv.py,
Gelu forms and the normalizations in normalization.py.
"""

from __future__ import annotations

from math import prod

from segcost.analyzer.registry import UNSUPPORTED, OpCost, OpView, cost_rule
from segcost.analyzer.rules.conv import fused_activation
from segcost.analyzer.rules.data_movement import data_movement
from segcost.analyzer.rules.elementwise import per_element
from segcost.analyzer.rules.matmul import gemm_cost, matmul_cost
from segcost.analyzer.rules.normalization import with_adds
from segcost.analyzer.rules.spatial import average_pool, global_pool

MICROSOFT = ("com.microsoft",)


@cost_rule("FusedGemm", domains=MICROSOFT)
def fused_gemm(op: OpView) -> OpCost:
    """MACs as Gemm (M·N·K of op(A)·op(B)); flops += M·N for C + the fused activation's per output (Relu 1, ...)."""
    cost = gemm_cost(op, 0, 1, 2)
    return fused_activation(op, cost, prod(cost.output_shape or ()))


@cost_rule("FusedMatMul", domains=MICROSOFT)
def fused_matmul(op: OpView) -> OpCost:
    """MACs as MatMul of op(A)·op(B), transA/transB swapping the last two dims; alpha is free."""
    if op.attr("transBatchA", 0) or op.attr("transBatchB", 0):
        return OpCost(status=UNSUPPORTED)  # batch dims moved too: not modelled
    return matmul_cost(op, 0, 1, bool(op.attr("transA", 0)), bool(op.attr("transB", 0)))


@cost_rule("QGemm", domains=MICROSOFT)
def qgemm(op: OpView) -> OpCost:
    """MACs as Gemm (inputs A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp); flops += M·N for C."""
    return gemm_cost(op, 0, 3, 6)


def _matmul_with_bias(op: OpView, bias_index: int) -> OpCost:
    cost = matmul_cost(op, 0, 1)
    elements = op.output_elements(0)
    if not op.has_input(bias_index) or elements is None:
        return cost
    return cost._replace(flops=cost.flops + elements, bias_flops=cost.bias_flops + elements)


@cost_rule("MatMulIntegerToFloat", domains=MICROSOFT)
def matmul_integer_to_float(op: OpView) -> OpCost:
    """MACs as MatMul (inputs A, B, a_scale, b_scale, a_zp, b_zp, bias); flops += outputs with bias."""
    return _matmul_with_bias(op, 6)


@cost_rule("DynamicQuantizeMatMul", domains=MICROSOFT)
def dynamic_quantize_matmul(op: OpView) -> OpCost:
    """MACs as MatMul (inputs A, B, b_scale, b_zp, bias); flops += outputs with bias."""
    return _matmul_with_bias(op, 4)


@cost_rule("QLinearAdd", "QLinearMul", domains=MICROSOFT)
def qlinear_binary(op: OpView) -> OpCost:
    """flops = 1 per output element (the add or multiply, as Add/Mul)."""
    return per_element(op, 1)


@cost_rule("QLinearSigmoid", domains=MICROSOFT)
def qlinear_sigmoid(op: OpView) -> OpCost:
    """flops = 4 per output element (as Sigmoid)."""
    return per_element(op, 4)


@cost_rule("QLinearLeakyRelu", domains=MICROSOFT)
def qlinear_leaky_relu(op: OpView) -> OpCost:
    """flops = 2 per output element (as LeakyRelu)."""
    return per_element(op, 2)


@cost_rule("QLinearSoftmax", domains=MICROSOFT)
def qlinear_softmax(op: OpView) -> OpCost:
    """flops = 4 per output element (as Softmax)."""
    return per_element(op, 4)


@cost_rule("QLinearAveragePool", domains=MICROSOFT)
def qlinear_average_pool(op: OpView) -> OpCost:
    """flops = prod(kernel) per output element (as AveragePool)."""
    return average_pool(op)


@cost_rule("QLinearGlobalAveragePool", domains=MICROSOFT)
def qlinear_global_average_pool(op: OpView) -> OpCost:
    """flops = input elements (as GlobalAveragePool)."""
    return global_pool(op)


@cost_rule("QLinearConcat", domains=MICROSOFT)
def qlinear_concat(op: OpView) -> OpCost:
    """MACs = flops = 0 (as Concat; the requantization of each input is not counted)."""
    return data_movement(op)


@cost_rule("BiasSoftmax", domains=MICROSOFT)
def bias_softmax(op: OpView) -> OpCost:
    """flops = 5 per output element (bias add, category elementwise, + Softmax's 4)."""
    return with_adds(per_element(op, 5), 1, 5)


@cost_rule("BiasAdd", domains=MICROSOFT)
def bias_add(op: OpView) -> OpCost:
    """flops = 2 per output element (X + bias + skip)."""
    return per_element(op, 2)
