"""Which constants are params, and which layer they count at: weights read through forwarders.

The convention (analyzer.conventions): a constant is a param — params and weight bytes — only
where a layer reads it in a weight role (is_weight), and counts once, at the first node that
reads it so. A forwarder (FORWARDING_OPS) of a constant passes it on; the constant counts at the
first real reader of the forwarded value. Scales and zero points of quantization ops are never
params (README; segcost.quant.footprint does the same), nor are integer or bool constants read
as shapes, axes, pads, indices or masks.
"""

from __future__ import annotations

from math import prod

from segcost.ir import Graph, Node, is_static_shape

# Ops that pass a constant on unchanged in value (Identity, DequantizeLinear of a stored weight)
# or only in layout/type. A constant read through a chain of them counts, params and weight
# bytes, at the first node that does work with it; the forwarders' rows show 0 params and 0
# activation bytes for it. Their other constant inputs (a Reshape's shape, Unsqueeze axes)
# travel with it.
FORWARDING_OPS = frozenset({"Identity", "DequantizeLinear", "Cast", "Transpose", "Reshape", "Squeeze",
                            "Unsqueeze", "Flatten"})
_MICROSOFT = "com.microsoft"
# Inputs that are quantization parameters (scales, zero points) — never params or weight bytes —
# by (domain, op type), numbered as in the ONNX spec and onnxruntime's ContribOperators.md (checked
# against the schemas onnxruntime 1.32 registers: onnxruntime.capi._pybind_state.get_all_operator_schema).
# None: QLinearConcat's (Y_scale, Y_zero_point, then tensor, scale, zero point per input).
QUANTIZATION_PARAMETERS: dict[tuple[str, str], tuple[int, ...] | None] = {
    ("", "QuantizeLinear"): (1, 2), ("", "DequantizeLinear"): (1, 2),
    ("", "QLinearConv"): (1, 2, 4, 5, 6, 7), ("", "QLinearMatMul"): (1, 2, 4, 5, 6, 7),
    ("", "ConvInteger"): (2, 3), ("", "MatMulInteger"): (2, 3),
    (_MICROSOFT, "QuantizeLinear"): (1, 2), (_MICROSOFT, "DequantizeLinear"): (1, 2),
    (_MICROSOFT, "QLinearConv"): (1, 2, 4, 5, 6, 7),
    (_MICROSOFT, "QLinearAdd"): (1, 2, 4, 5, 6, 7), (_MICROSOFT, "QLinearMul"): (1, 2, 4, 5, 6, 7),
    (_MICROSOFT, "QLinearSigmoid"): (1, 2, 3, 4), (_MICROSOFT, "QLinearLeakyRelu"): (1, 2, 3, 4),
    (_MICROSOFT, "QLinearSoftmax"): (1, 2, 3, 4), (_MICROSOFT, "QLinearAveragePool"): (1, 2, 3, 4),
    (_MICROSOFT, "QLinearGlobalAveragePool"): (1, 2, 3, 4), (_MICROSOFT, "QLinearReduceMean"): (1, 2, 3, 4),
    (_MICROSOFT, "QLinearWhere"): (2, 3, 5, 6, 7, 8),
    (_MICROSOFT, "QGemm"): (1, 2, 4, 5, 7, 8), (_MICROSOFT, "QLinearConcat"): None,
    (_MICROSOFT, "MatMulIntegerToFloat"): (2, 3, 4, 5), (_MICROSOFT, "DynamicQuantizeMatMul"): (2, 3),
    (_MICROSOFT, "MatMulNBits"): (2, 3), (_MICROSOFT, "MatMulBnb4"): (2,),
    (_MICROSOFT, "GatherBlockQuantized"): (2, 3), (_MICROSOFT, "QAttention"): (3, 4, 6, 7),
    (_MICROSOFT, "DynamicQuantizeLSTM"): (8, 9, 10, 11), (_MICROSOFT, "QOrderedMatMul"): (1, 3, 4, 7),
}
# Inputs that hold a quantized weight or bias, of an integer type (int8/uint8, int4/uint4 packed,
# int32 biases), by (domain, op type), numbered as above: where an integer constant is a param.
# Everywhere else an integer constant is a shape, axes, pads, indices or a count (never a param).
QUANTIZED_WEIGHTS: dict[tuple[str, str], tuple[int, ...]] = {
    ("", "DequantizeLinear"): (0,),          # x: the stored weight or bias (int8, int32, int4, float8 ...)
    ("", "QLinearConv"): (3, 8), ("", "QLinearMatMul"): (0, 3),   # w, B; a, b
    ("", "ConvInteger"): (1,), ("", "MatMulInteger"): (0, 1),     # w; A, B
    (_MICROSOFT, "DequantizeLinear"): (0,), (_MICROSOFT, "QLinearConv"): (3, 8),
    (_MICROSOFT, "QLinearAdd"): (0, 3), (_MICROSOFT, "QLinearMul"): (0, 3), (_MICROSOFT, "QLinearWhere"): (1, 4),
    (_MICROSOFT, "QGemm"): (0, 3, 6),       # A, B, C (int32 bias)
    (_MICROSOFT, "MatMulIntegerToFloat"): (0, 1), (_MICROSOFT, "DynamicQuantizeMatMul"): (1,),
    (_MICROSOFT, "MatMulNBits"): (1,), (_MICROSOFT, "MatMulBnb4"): (1,), (_MICROSOFT, "MatMulFpQ4"): (1,),
    (_MICROSOFT, "GatherBlockQuantized"): (0,), (_MICROSOFT, "QAttention"): (1,),
    (_MICROSOFT, "DynamicQuantizeLSTM"): (1, 2), (_MICROSOFT, "QOrderedMatMul"): (0, 2, 6),
}
# Inputs of ai.onnx ops that configure the op rather than hold data it computes with, of types that
# may be floating point (integer ones need no entry): Clip's min/max, Pad's constant_value, Resize's
# roi/scales, Upsample's scales, Dropout's ratio, Range's start/limit/delta, OneHot's depth/values,
# NonMaxSuppression's thresholds, MelWeightMatrix's edge frequencies, and the inputs read only for
# their shape or type (Shape, Size, CastLike's target_type, EyeLike, Random*Like). ONNX operator spec
# (onnx/docs/Operators.md) input lists.
OPERATOR_SETTINGS: dict[str, tuple[int, ...]] = {
    "Clip": (1, 2), "Pad": (2,), "Resize": (1, 2), "Upsample": (1,), "Dropout": (1,), "Range": (0, 1, 2),
    "OneHot": (1, 2), "NonMaxSuppression": (3, 4), "MelWeightMatrix": (3, 4), "Shape": (0,), "Size": (0,),
    "CastLike": (1,), "EyeLike": (0,), "RandomNormalLike": (0,), "RandomUniformLike": (0,),
}
# ONNX element types (TensorProto.DataType) that are never weights outside QUANTIZED_WEIGHTS: the
# integer types (uint8, int8, uint16, int16, int32, int64, uint32, uint64, uint4, int4, uint2, int2),
# string and bool. Every other type — the floating ones (float16/32/64, bfloat16, float8/6/4 types,
# complex) and an unknown one (0) — is a weight where it is read as data.
_NEVER_WEIGHT_TYPES = frozenset({2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 21, 22, 25, 26})
# Op types _Walk hands to forwarded_constants (any domain; Constant is the walk's own).
SPECIAL_OPS = frozenset({"Constant", *FORWARDING_OPS, *(op_type for _, op_type in QUANTIZATION_PARAMETERS)})


def is_weight(domain: str, op_type: str, position: int | None, dtype: int) -> bool:
    """Whether a constant of ONNX element type `dtype` read at input `position` of a (domain, op_type)
    node is a weight (a param): a quantized weight or bias (QUANTIZED_WEIGHTS, any type), else a tensor
    of a floating-point (or unknown) type read as data (not an OPERATOR_SETTINGS input). Integer, bool
    and string constants elsewhere — shapes, axes, pads, indices, masks — are not. `position` None:
    read by a subgraph of an If/Loop/Scan node (the type decides). Quantization parameters are left
    out by the caller (QUANTIZATION_PARAMETERS)."""
    if position is not None and position in QUANTIZED_WEIGHTS.get((domain, op_type), ()):
        return True
    if dtype in _NEVER_WEIGHT_TYPES:
        return False
    return position is None or domain not in ("", "ai.onnx") or position not in OPERATOR_SETTINGS.get(op_type, ())


def _quantization_inputs(node: Node) -> list[str]:
    indices = QUANTIZATION_PARAMETERS.get((node.domain, node.op_type), ())
    inputs = node.inputs
    if indices is None:   # QLinearConcat
        return [tensor for index, tensor in enumerate(inputs) if index < 2 or (index - 2) % 3]
    return [inputs[index] for index in indices if index < len(inputs)]


# A constant a forwarded value carries: (its name, True when it is a weight whoever reads the value —
# a DequantizeLinear's stored weight — or False when the reader's role decides, is_weight).
Root = tuple[str, bool]


def forwarded_constants(graph: Graph, forwarders: dict[str, Node], constants: set[str]
                        ) -> tuple[dict[str, tuple[Root, ...]], dict[str, str], set[str]]:
    """({forwarder output: the constants it carries}, {forwarding node: its output}, quantization parameters).

    `forwarders` are the nodes of SPECIAL_OPS but Constant, in topological order. A standard
    FORWARDING_OPS node forwards when its data input (0) is a constant or forwarded, its other
    inputs are constants, and its one output is not a graph output (else it is a layer as
    before; if nobody reads the output, _Walk counts the constants at the forwarder). Its other
    inputs travel with the value when they are weights there (is_weight; a Reshape's int64 shape,
    Unsqueeze axes and a DequantizeLinear's scale are not).
    """
    forwarded: dict[str, tuple[Root, ...]] = {}
    forwarding: dict[str, str] = {}
    quantization: set[str] = set()
    graph_outputs = set(graph.outputs)
    for key, node in forwarders.items():
        inputs, outputs = node.inputs, node.outputs
        if (node.domain, node.op_type) in QUANTIZATION_PARAMETERS:
            quantization.update(tensor for tensor in _quantization_inputs(node) if tensor in constants)
        if node.domain or node.op_type not in FORWARDING_OPS:
            continue
        if not inputs or len(outputs) != 1 or not outputs[0] or outputs[0] in graph_outputs:
            continue
        data = inputs[0]
        if any(tensor and tensor not in constants for tensor in inputs[1:]):
            continue
        roots = forwarded.get(data) or (((data, False),) if data in constants else None)
        if roots is None:
            continue
        if node.op_type == "DequantizeLinear":   # the stored (quantized) weight, whatever reads it
            roots = tuple((root, True) for root, _ in roots)
        else:
            roots += tuple((tensor, True) for position, tensor in enumerate(inputs[1:], 1)
                           if tensor and is_weight("", node.op_type, position, graph.dtype(tensor)))
        forwarded[outputs[0]] = roots
        forwarding[key] = outputs[0]
    return forwarded, forwarding, quantization


def constant_size(tensor: str, init, shape_of, nbytes) -> tuple[int, int]:
    """(params, weight bytes) of a constant: an initializer or a (sparse) Constant node's output."""
    if init is not None:
        return init.size, init.nbytes
    shape = shape_of(tensor)
    elements = prod(shape) if is_static_shape(shape) else 0
    return elements, nbytes(tensor)
