"""Per-element rules: activations, arithmetic, BatchNormalization, (de)quantization.

None of these are MACs. Their flops are elementary operations per output element, with
the count per element stated in each rule's docstring (e.g. Sigmoid = 4: neg, exp, add,
div). The counts follow the usual convention of fvcore/onnx-tool where one exists.
"""

from __future__ import annotations

from segcost.analyzer.registry import SHAPE_UNKNOWN, OpCost, OpView, cost_rule
from segcost.ir.opforms import normalize_axis

# Per-element flops of the activations other ops apply inside themselves (onnxruntime's FusedConv/FusedGemm
# `activation`, RNN/GRU/LSTM `activations`), by lower-case name: the counts of the standalone ops' rules below
# (Affine α·x + β 2, ScaledTanh α·tanh(β·x) 3, ParametricSoftplus α·softplus(β·x) 4; a fused Clip has both bounds).
ACTIVATION_FLOPS = {"relu": 1, "tanh": 1, "softsign": 1, "sigmoid": 4, "leakyrelu": 2, "thresholdedrelu": 2,
                    "elu": 2, "celu": 2, "selu": 2, "softplus": 2, "hardsigmoid": 3, "clip": 2, "affine": 2,
                    "scaledtanh": 3, "parametricsoftplus": 4, "quickgelu": 6, "": 0, "identity": 0}


def activation_flops(name: str | bytes) -> int | None:
    """Per-element flops of the activation `name` (case-insensitive; "" none), None for one not in ACTIVATION_FLOPS."""
    text = name.decode() if isinstance(name, bytes) else str(name)
    return ACTIVATION_FLOPS.get(text.lower())


def per_element(op: OpView, flops_per_element: int) -> OpCost:
    """flops = flops_per_element × output elements; status shape_unknown when no shape is known."""
    elements = op.output_elements(0)
    if elements is None:
        return OpCost(status=SHAPE_UNKNOWN)
    return OpCost(flops=flops_per_element * elements)


@cost_rule("Relu", "Abs", "Neg", "Sign", "Floor", "Ceil", "Round", "Not", "Reciprocal", "Sqrt", "Exp",
           "Log", "Tanh", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
           "Atanh", "IsNaN", "IsInf", "Softsign", "BitwiseNot", pure=True)
def unary(op: OpView) -> OpCost:
    """flops = 1 per output element (one elementary op, e.g. max(x, 0), exp(x))."""
    return per_element(op, 1)


@cost_rule("LeakyRelu", "PRelu", "ThresholdedRelu", "Elu", "Celu", "Selu", "Softplus", pure=True)
def two_step(op: OpView) -> OpCost:
    """flops = 2 per output element (compare + scale)."""
    return per_element(op, 2)


@cost_rule("Clip")
def clip(op: OpView) -> OpCost:
    """flops = 1 per output element per bound given (min, max): Clip(x, 0) is a ReLU, 1; no bounds, 0."""
    return per_element(op, sum(1 for name in ("min", "max") if op.operand(name).given))


@cost_rule("HardSigmoid", pure=True)
def hard_sigmoid(op: OpView) -> OpCost:
    """flops = 3 per output element (α·x + β, then clip to [0, 1] as min + max counted as one)."""
    return per_element(op, 3)


@cost_rule("Sigmoid", pure=True)
def sigmoid(op: OpView) -> OpCost:
    """flops = 4 per output element (neg, exp, add 1, divide)."""
    return per_element(op, 4)


@cost_rule("Shrink", pure=True)
def shrink(op: OpView) -> OpCost:
    """flops = 2 per output element (compare with ±lambd, then add or subtract bias; 0 inside the band)."""
    return per_element(op, 2)


@cost_rule("Swish", pure=True)
def swish(op: OpView) -> OpCost:
    """flops = 5 per output element (Sigmoid's 4 + ·x), + 1 for α·x when alpha ≠ 1 (ONNX Swish-24)."""
    return per_element(op, 5 + (float(op.attr("alpha", 1.0)) != 1.0))


@cost_rule("SwiGLU", pure=True)
def swiglu(op: OpView) -> OpCost:
    """flops = Swish's 5 (+1 when alpha ≠ 1) + 1 (·B) per output element (ONNX SwiGLU-28: Swish(A)·B)."""
    return per_element(op, 6 + (float(op.attr("alpha", 1.0)) != 1.0))


@cost_rule("HardSwish", pure=True)
def hard_swish(op: OpView) -> OpCost:
    """flops = 4 per output element (x·hardsigmoid(x): 3 for hardsigmoid + 1 mul)."""
    return per_element(op, 4)


@cost_rule("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod", "Equal", "Greater",
           "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Where", "BitShift", "BitwiseAnd",
           "BitwiseOr", "BitwiseXor", pure=True)
def nary(op: OpView) -> OpCost:
    """flops = (inputs − 1) per output element (an n-ary op combines n values with n−1 ops)."""
    present = sum(1 for tensor in op.node.inputs if tensor)
    return per_element(op, max(present - 1, 1))


@cost_rule("BatchNormalization", pure=True)
def batch_normalization(op: OpView) -> OpCost:
    """flops = 2 per output element (inference form: x·scale′ + shift′ with folded statistics)."""
    return per_element(op, 2)


@cost_rule("Softmax", "LogSoftmax")
def softmax(op: OpView) -> OpCost:
    """flops = 4 per output element (subtract max, exp, sum, divide)."""
    shape = op.input_shapes[0] if op.input_shapes else None
    axis = op.operand("axis").scalar()  # default 1 before opset 13, -1 from 13
    if shape is not None and axis is not None:
        normalize_axis(int(axis), len(shape), f"{op.where} attribute axis")
    return per_element(op, 4)


@cost_rule("QuantizeLinear", pure=True)
def quantize_linear(op: OpView) -> OpCost:
    """flops = 3 per output element (divide by scale, round, add zero point; saturation free)."""
    return per_element(op, 3)


@cost_rule("DequantizeLinear", pure=True)
def dequantize_linear(op: OpView) -> OpCost:
    """flops = 2 per output element (subtract zero point, multiply by scale)."""
    return per_element(op, 2)


@cost_rule("DynamicQuantizeLinear", pure=True)
def dynamic_quantize_linear(op: OpView) -> OpCost:
    """flops = 5 per output element (min/max scan: 2, category reduction; the 3 of QuantizeLinear)."""
    cost = per_element(op, 5)
    return cost._replace(category_flops=(("reduction", 2 * cost.flops // 5),)) if cost.flops else cost
