"""Output shapes of onnxruntime's com.microsoft ops, through standard-ONNX "shape twins".

Models saved by onnxruntime at ORT_ENABLE_EXTENDED (FusedConv, FusedGemm, FusedMatMul, Gelu,
SkipLayerNormalization, ...) and its QOperator int8 models (QLinearAdd, QLinearConcat, QGemm,
...) use ops whose shape-inference functions live in onnxruntime's C++ and are not visible to
`onnx.shape_inference`: every tensor behind the first such node stays open. Here each node
whose output shapes are a standard op's is replaced, in the weightless copy that inference
reads (never in the IR), by that op — FusedConv by Conv with the same attributes, QLinearAdd
by Add of its two data inputs, QLinearConcat by Concat of its data inputs — so one onnx
inference run closes the whole graph. Output shapes are those of onnxruntime's
docs/ContribOperators.md; `tests/test_shapes_contrib.py` checks every twin against the shapes
onnxruntime produces when it runs the op.

Why not onnxruntime's `SymbolicShapeInference` (which knows these ops): it imports sympy,
which the onnxruntime wheel does not depend on (its requirements are flatbuffers, numpy,
packaging, protobuf) and segcost's core dependencies do not include; and it stops with
"Incomplete symbolic shape inference" on models onnx inference plus `evaluate.py` closes
(DPT, MaskFormer, PP-OCR cls). A twin is one table row per op, and onnx keeps doing the
shape arithmetic.

Twins of ops with 8-bit operands run their standard op in float between two Casts (Gemm,
AveragePool and Softmax do not accept uint8), the output Cast taking the dtype the op's spec
gives (the y_zero_point's); temporary tensors are named `segcost.twin/...` and removed
from the inferred model.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import TensorProto, helper

MICROSOFT = "com.microsoft"
TEMP_PREFIX = "segcost.twin/"
# Attributes that only change values (activations, scales), never shapes: dropped from twins.
_VALUE_ATTRIBUTES = frozenset({"activation", "activation_params", "alpha", "beta", "channels_last"})

Twin = Callable[[onnx.NodeProto, "_Context"], list[onnx.NodeProto] | None]


class _Context:
    """What a twin builder may ask of the model: dtypes of constants, the default opset."""

    def __init__(self, shell: onnx.ModelProto) -> None:
        self.opset = next((entry.version for entry in shell.opset_import if entry.domain in ("", "ai.onnx")), 0)
        self.dtypes = {value.name: value.type.tensor_type.elem_type for value in shell.graph.input}
        self.dtypes.update({init.name: init.data_type for init in shell.graph.initializer})
        self.count = 0

    def temp(self) -> str:
        self.count += 1
        return f"{TEMP_PREFIX}{self.count}"


def _attrs(node: onnx.NodeProto, keep: frozenset[str] | None = None) -> dict:
    """The node's attributes as make_node kwargs, minus the value-only ones (or only `keep`)."""
    out = {}
    for attribute in node.attribute:
        if (keep is not None and attribute.name not in keep) or (keep is None and attribute.name in _VALUE_ATTRIBUTES):
            continue
        out[attribute.name] = helper.get_attribute_value(attribute)
    return out


def _int_attr(node: onnx.NodeProto, name: str, default: int = 0) -> int:
    return next((int(attribute.i) for attribute in node.attribute if attribute.name == name), default)


def _input(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if index < len(node.input) else ""


def _same_op(op_type: str, inputs: tuple[int, ...], keep: frozenset[str] | None = None) -> Twin:
    """Twin: standard `op_type` on the given inputs, same attributes, first output."""
    def build(node: onnx.NodeProto, context: _Context) -> list[onnx.NodeProto] | None:
        names = [_input(node, index) for index in inputs]
        if not names[0]:
            return None
        while names and not names[-1]:
            names.pop()
        return [helper.make_node(op_type, names, [node.output[0]], **_attrs(node, keep))]
    return build


def _pass_through(*pairs: tuple[int, int]) -> Twin:
    """Twin: output o has the shape and dtype of input i, for each (i, o) given and present."""
    def build(node: onnx.NodeProto, context: _Context) -> list[onnx.NodeProto] | None:
        nodes = [helper.make_node("Identity", [node.input[i]], [node.output[o]]) for i, o in pairs
                 if o < len(node.output) and node.output[o] and _input(node, i)]
        return nodes or None
    return build


def _in_float(op_type: str, inputs: tuple[int, ...], dtype_from: tuple[int, ...] | None,
              keep: frozenset[str] | None = None) -> Twin:
    """Twin for an op with 8-bit operands: Cast to float, the standard op, Cast to the output dtype.

    The output dtype is that of the first of the inputs `dtype_from` present (zero points:
    constants, whose dtype is known before inference), else — from opset 15 — input 0's
    (CastLike); float when `dtype_from` is None.
    """
    def build(node: onnx.NodeProto, context: _Context) -> list[onnx.NodeProto] | None:
        names = [_input(node, index) for index in inputs]
        if not all(names):
            return None
        nodes, floats = [], []
        for name in names:
            floats.append(context.temp())
            nodes.append(helper.make_node("Cast", [name], [floats[-1]], to=TensorProto.FLOAT))
        result = context.temp()
        nodes.append(helper.make_node(op_type, floats, [result], **_attrs(node, keep)))
        sources = [_input(node, index) for index in dtype_from] if dtype_from is not None else []
        dtype = next((context.dtypes.get(name, 0) for name in sources if name), 0)
        if dtype_from is None or dtype:
            nodes.append(helper.make_node("Cast", [result], [node.output[0]], to=dtype or TensorProto.FLOAT))
        elif context.opset >= 15:
            nodes.append(helper.make_node("CastLike", [result, names[0]], [node.output[0]]))
        else:
            return None
        return nodes
    return build


def _constant(context: _Context, value: int) -> tuple[onnx.NodeProto, str]:
    name = context.temp()
    return helper.make_node("Constant", [], [name], value_ints=[value]), name


def _transposed(name: str, context: _Context) -> tuple[list[onnx.NodeProto], str]:
    """A float tensor shaped like `name` with its last two dims swapped, whatever its rank.

    Transpose needs a perm, hence the rank, which is not known before inference; onnx's data
    propagation instead carries Shape → Slice → Concat into ConstantOfShape's output shape
    (symbolic dims too). Einsum's "...ij" does not serve: onnx's Einsum inference refuses
    ellipses of different ranks, which MatMul broadcasting allows.
    """
    nodes, bounds = [], {}
    for key, value in (("minus_two", -2), ("minus_one", -1), ("zero", 0), ("end", 1 << 62)):
        node, bounds[key] = _constant(context, value)
        nodes.append(node)
    shape, batch, rows, cols, swapped, out = (context.temp() for _ in range(6))
    nodes += [helper.make_node("Shape", [name], [shape]),
              helper.make_node("Slice", [shape, bounds["zero"], bounds["minus_two"]], [batch]),
              helper.make_node("Slice", [shape, bounds["minus_two"], bounds["minus_one"]], [rows]),
              helper.make_node("Slice", [shape, bounds["minus_one"], bounds["end"]], [cols]),
              helper.make_node("Concat", [batch, cols, rows], [swapped], axis=0),
              helper.make_node("ConstantOfShape", [swapped], [out])]
    return nodes, out


def _fused_matmul(node: onnx.NodeProto, context: _Context) -> list[onnx.NodeProto] | None:
    """FusedMatMul: alpha·op(A)·op(B), transA/transB swapping the last two dims before MatMul."""
    if _int_attr(node, "transBatchA") or _int_attr(node, "transBatchB"):
        return None  # moves batch dims too: no standard form; the tensor stays open
    trans_a, trans_b = _int_attr(node, "transA"), _int_attr(node, "transB")
    if not trans_a and not trans_b:
        return [helper.make_node("MatMul", list(node.input[:2]), [node.output[0]])]
    nodes, operands = [], []
    for name, transpose in ((node.input[0], trans_a), (node.input[1], trans_b)):
        if transpose:
            built, name = _transposed(name, context)
            nodes += built
        else:  # the transposed operand is float (ConstantOfShape): MatMul wants both alike
            nodes.append(helper.make_node("Cast", [name], [context.temp()], to=TensorProto.FLOAT))
            name = nodes[-1].output[0]
        operands.append(name)
    product = context.temp()
    nodes.append(helper.make_node("MatMul", operands, [product]))
    if context.opset >= 15:  # the output has A's dtype (float16 models too)
        nodes.append(helper.make_node("CastLike", [product, node.input[0]], [node.output[0]]))
    else:
        nodes.append(helper.make_node("Cast", [product], [node.output[0]], to=TensorProto.FLOAT))
    return nodes


def _qlinear_concat(node: onnx.NodeProto, context: _Context) -> list[onnx.NodeProto] | None:
    """QLinearConcat(Y_scale, Y_zero_point, X1, X1_scale, X1_zp, ...): Concat of the X inputs."""
    data = list(node.input[2::3])
    if not data or not all(data):
        return None
    return [helper.make_node("Concat", data, [node.output[0]], **_attrs(node, frozenset({"axis"})))]


def _unless_channels_last(twin: Twin) -> Twin:
    def build(node: onnx.NodeProto, context: _Context) -> list[onnx.NodeProto] | None:
        return None if _int_attr(node, "channels_last") else twin(node, context)
    return build


def _qgemm(node: onnx.NodeProto, context: _Context) -> list[onnx.NodeProto] | None:
    """QGemm: Gemm of A (input 0) and B (input 3); a float output unless y_scale (input 7) is given."""
    quantized_output = bool(_input(node, 7))
    return _in_float("Gemm", (0, 3), (8,) if quantized_output else None, _GEMM_ATTRIBUTES)(node, context)


_POOL_ATTRIBUTES = frozenset({"auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides",
                              "dilations"})
_GEMM_ATTRIBUTES = frozenset({"transA", "transB"})

# (domain, op_type) -> twin. Inputs are numbered as in onnxruntime's ContribOperators.md.
TWINS: dict[tuple[str, str], Twin] = {
    # ORT_ENABLE_EXTENDED fusions (float)
    (MICROSOFT, "FusedConv"): _same_op("Conv", (0, 1, 2)),  # input 3 (Z, summed) has the output's shape
    (MICROSOFT, "FusedGemm"): _same_op("Gemm", (0, 1, 2)),
    (MICROSOFT, "FusedMatMul"): _fused_matmul,
    (MICROSOFT, "Gelu"): _pass_through((0, 0)),
    (MICROSOFT, "QuickGelu"): _pass_through((0, 0)),
    (MICROSOFT, "FastGelu"): _pass_through((0, 0)),
    (MICROSOFT, "BiasGelu"): _same_op("Add", (0, 1), frozenset()),
    (MICROSOFT, "BiasAdd"): _pass_through((0, 0)),
    (MICROSOFT, "BiasSoftmax"): _pass_through((0, 0)),
    (MICROSOFT, "LayerNormalization"): _pass_through((0, 0)),
    (MICROSOFT, "SimplifiedLayerNormalization"): _pass_through((0, 0)),
    # outputs: output, mean, inv_std_var (not given a twin), input_skip_bias_sum
    (MICROSOFT, "SkipLayerNormalization"): _pass_through((0, 0), (0, 3)),
    (MICROSOFT, "SkipSimplifiedLayerNormalization"): _pass_through((0, 0), (0, 3)),
    # QOperator int8 forms (onnxruntime.quantization, QuantFormat.QOperator)
    (MICROSOFT, "QLinearAdd"): _same_op("Add", (0, 3), frozenset()),
    (MICROSOFT, "QLinearMul"): _same_op("Mul", (0, 3), frozenset()),
    (MICROSOFT, "QLinearSigmoid"): _pass_through((0, 0)),
    (MICROSOFT, "QLinearLeakyRelu"): _pass_through((0, 0)),
    (MICROSOFT, "QLinearSoftmax"): _pass_through((0, 0)),
    (MICROSOFT, "QLinearConcat"): _qlinear_concat,
    (MICROSOFT, "QLinearAveragePool"): _unless_channels_last(_in_float("AveragePool", (0,), (4, 2), _POOL_ATTRIBUTES)),
    (MICROSOFT, "QLinearGlobalAveragePool"): _unless_channels_last(_in_float("GlobalAveragePool", (0,), (4, 2),
                                                                             frozenset())),
    (MICROSOFT, "QGemm"): _qgemm,
    (MICROSOFT, "MatMulIntegerToFloat"): _in_float("MatMul", (0, 1), None, frozenset()),
    (MICROSOFT, "DynamicQuantizeMatMul"): _in_float("MatMul", (0, 1), None, frozenset()),
}


def has_twins(shell: onnx.ModelProto) -> bool:
    """True when some node of the graph is an op with a shape twin (a cheap scan, no copy)."""
    return any(node.domain == MICROSOFT and (node.domain, node.op_type) in TWINS for node in shell.graph.node)


def with_twins(shell: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `shell` in which every node with a twin is replaced by it (outputs keep their names).

    Nodes whose attributes have no standard equivalent (FusedMatMul with transBatchA, pooling
    with channels_last) keep their contrib form, and what they produce stays open.
    """
    context = _Context(shell)
    twinned = onnx.ModelProto()
    twinned.CopyFrom(shell)
    nodes: list[onnx.NodeProto] = []
    for node in shell.graph.node:
        twin = TWINS.get((node.domain, node.op_type))
        replacement = twin(node, context) if twin is not None else None
        nodes.extend(replacement if replacement else [node])
    del twinned.graph.node[:]
    twinned.graph.node.extend(nodes)
    return twinned


def drop_temporaries(inferred: onnx.ModelProto) -> onnx.ModelProto:
    """Remove the twins' temporary tensors from an inferred model's value_info (in place).

    (Twins define their constants with Constant nodes, so no temporary is an initializer.)
    """
    kept = [value for value in inferred.graph.value_info if not value.name.startswith(TEMP_PREFIX)]
    if len(kept) != len(inferred.graph.value_info):
        del inferred.graph.value_info[:]
        inferred.graph.value_info.extend(kept)
    return inferred
