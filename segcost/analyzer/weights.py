"""Which layer a constant counts at: weights read through forwarders, quantization parameters.

The convention (analyzer.conventions): a constant counts — params and weight bytes — once,
at the first node that does work with it. A forwarder (FORWARDING_OPS) of a constant passes
it on; the constant counts at the first real reader of the forwarded value. Scales and zero
points of quantization ops are never params (README; segcost.quant.footprint does the same).
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
# by (domain, op type), numbered as in the ONNX spec and onnxruntime's ContribOperators.md.
# None: QLinearConcat's (Y_scale, Y_zero_point, then tensor, scale, zero point per input).
QUANTIZATION_PARAMETERS: dict[tuple[str, str], tuple[int, ...] | None] = {
    ("", "QuantizeLinear"): (1, 2), ("", "DequantizeLinear"): (1, 2),
    ("", "QLinearConv"): (1, 2, 4, 5, 6, 7), ("", "QLinearMatMul"): (1, 2, 4, 5, 6, 7),
    ("", "ConvInteger"): (2, 3), ("", "MatMulInteger"): (2, 3),
    (_MICROSOFT, "QuantizeLinear"): (1, 2), (_MICROSOFT, "DequantizeLinear"): (1, 2),
    (_MICROSOFT, "QLinearAdd"): (1, 2, 4, 5, 6, 7), (_MICROSOFT, "QLinearMul"): (1, 2, 4, 5, 6, 7),
    (_MICROSOFT, "QLinearSigmoid"): (1, 2, 3, 4), (_MICROSOFT, "QLinearLeakyRelu"): (1, 2, 3, 4),
    (_MICROSOFT, "QLinearSoftmax"): (1, 2, 3, 4), (_MICROSOFT, "QLinearAveragePool"): (1, 2, 3, 4),
    (_MICROSOFT, "QLinearGlobalAveragePool"): (1, 2, 3, 4),
    (_MICROSOFT, "QGemm"): (1, 2, 4, 5, 7, 8), (_MICROSOFT, "QLinearConcat"): None,
    (_MICROSOFT, "MatMulIntegerToFloat"): (2, 3, 4, 5), (_MICROSOFT, "DynamicQuantizeMatMul"): (2, 3),
}
# Op types _Walk hands to forwarded_constants (any domain; Constant is the walk's own).
SPECIAL_OPS = frozenset({"Constant", *FORWARDING_OPS, *(op_type for _, op_type in QUANTIZATION_PARAMETERS)})


def _quantization_inputs(node: Node) -> list[str]:
    indices = QUANTIZATION_PARAMETERS.get((node.domain, node.op_type), ())
    inputs = node.inputs
    if indices is None:   # QLinearConcat
        return [tensor for index, tensor in enumerate(inputs) if index < 2 or (index - 2) % 3]
    return [inputs[index] for index in indices if index < len(inputs)]


def forwarded_constants(graph: Graph, forwarders: dict[str, Node], constants: set[str]
                        ) -> tuple[dict[str, tuple[str, ...]], dict[str, str], set[str]]:
    """({forwarder output: the constants it carries}, {forwarding node: its output}, quantization parameters).

    `forwarders` are the nodes of SPECIAL_OPS but Constant, in topological order. A standard
    FORWARDING_OPS node forwards when its data input (0) is a constant or forwarded, its other
    inputs are constants, and its one output is not a graph output (else it is a layer as
    before; if nobody reads the output, _Walk counts the constants at the forwarder).
    """
    forwarded: dict[str, tuple[str, ...]] = {}
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
        data, rest = inputs[0], [tensor for tensor in inputs[1:] if tensor]
        roots = forwarded.get(data) or ((data,) if data in constants else None)
        if roots is None or any(tensor not in constants for tensor in rest):
            continue
        if node.op_type != "DequantizeLinear":
            roots += tuple(rest)
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
