"""Every FLOP is in exactly one place: flops = 2·macs + the --count categories' parts, for every rule.

The test walks the whole registry (segcost.analyzer.rules.registered_ops): each op with a rule gets a small
valid node — one whose required inputs are all float tensors of one shape when that fits the op, a case of
its own below otherwise — and every layer must satisfy the sum. A new rule whose op has no category and
does not say where its flops go (OpCost.bias_flops, category_flops) fails here, and so does a new op with
no case: the coverage check asks for one. Hand counts of the newly counted work (fused activations, the
RNN/GRU/LSTM gates) are at the end.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.defs
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.analyzer.conventions import CATEGORIES, CONTRIB_CATEGORIES, convention_totals, op_category
from segcost.analyzer.rules import find_rule, registered_ops
from segcost.analyzer.rules.data_movement import data_movement
from segcost.frontends.onnx import load_model

F, I8, U8, I32, I64 = TensorProto.FLOAT, TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32, TensorProto.INT64
MS = "com.microsoft"
X = (2, 3, 4, 5)   # the default input shape


def _model(op_type, inputs, consts=(), order=None, outputs=1, opset=22, domain="", **attrs):
    """One node "node": graph inputs {name: shape or (shape, dtype)}, constants {name: array}, in `order`."""
    consts = dict(consts)
    names = order if order is not None else [*inputs, *consts]
    node = helper.make_node(op_type, names, ["y", *(f"y{index}" for index in range(1, outputs))], name="node",
                            domain=domain or None, **attrs)
    values = [helper.make_tensor_value_info(name, *((spec[1], spec[0]) if isinstance(spec[0], tuple)
                                                    else (F, spec))) for name, spec in inputs.items()]
    graph = helper.make_graph([node], "g", values, [helper.make_empty_tensor_value_info("y")],
                              [numpy_helper.from_array(np.asarray(value), name) for name, value in consts.items()])
    opsets = [helper.make_opsetid("", opset), *([helper.make_opsetid(domain, 1)] if domain else [])]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def _f(*shape):
    return np.ones(shape, np.float32)


def _i64(*values):
    return np.array(values, np.int64)


def _scale():
    return np.array(0.5, np.float32)


def _zp(dtype=np.uint8):
    return np.array(0, dtype)


def _qlinear(op_type, shape=(1, 3, 4, 4), **attrs):
    """A com.microsoft QLinear op on a uint8 X: X, X_scale, X_zp, Y_scale, Y_zp."""
    return _model(op_type, {"x": (shape, U8)}, {"xs": _scale(), "xz": _zp(), "ys": _scale(), "yz": _zp()},
                  domain=MS, **attrs)


def _lstm(**attrs):
    """LSTM T=3, B=2, I=5, H=4, bidirectional, with B and peepholes P."""
    return _model("LSTM", {"x": (3, 2, 5)}, {"w": _f(2, 16, 5), "r": _f(2, 16, 4), "b": _f(2, 32),
                                             "p": _f(2, 12)}, order=["x", "w", "r", "b", "", "", "", "p"],
                  hidden_size=4, direction="bidirectional", **attrs)


# Ops the default node does not fit (or whose interesting form it misses): one or more models each.
CASES = {
    ("", "AffineGrid"): [_model("AffineGrid", {"theta": (2, 2, 3)}, {"size": _i64(2, 3, 5, 7)}, opset=20)],
    ("", "AveragePool"): [_model("AveragePool", {"x": X}, kernel_shape=[2, 2])],
    ("", "MaxPool"): [_model("MaxPool", {"x": X}, kernel_shape=[2, 2])],
    ("", "LpPool"): [_model("LpPool", {"x": X}, kernel_shape=[2, 2])],
    ("", "BatchNormalization"): [_model("BatchNormalization", {"x": X}, {name: _f(3) for name in "sbmv"},
                                        opset=15)],
    ("", "CausalConvWithState"): [_model("CausalConvWithState", {"x": (2, 4, 6)}, {"w": _f(4, 1, 3), "b": _f(4)},
                                         outputs=2, opset=27, activation="silu")],
    ("", "Clip"): [_model("Clip", {"x": X}, {"lo": np.float32(0), "hi": np.float32(6)}, opset=13)],
    ("", "Col2Im"): [_model("Col2Im", {"x": (1, 2 * 4, 9)}, {"image": _i64(4, 4), "block": _i64(2, 2)}, opset=18)],
    ("", "Conv"): [_model("Conv", {"x": (1, 3, 6, 6)}, {"w": _f(4, 3, 3, 3), "b": _f(4)})],
    ("", "ConvInteger"): [_model("ConvInteger", {"x": ((1, 3, 6, 6), U8)}, {"w": np.ones((4, 3, 3, 3), np.uint8)})],
    ("", "QLinearConv"): [_model("QLinearConv", {"x": ((1, 3, 6, 6), U8)},
                                 {"xs": _scale(), "xz": _zp(), "w": np.ones((4, 3, 3, 3), np.uint8), "ws": _scale(),
                                  "wz": _zp(), "ys": _scale(), "yz": _zp(), "b": np.ones(4, np.int32)})],
    ("", "ConvTranspose"): [_model("ConvTranspose", {"x": (1, 3, 4, 4)}, {"w": _f(3, 2, 3, 3), "b": _f(2)})],
    ("", "CumSum"): [_model("CumSum", {"x": X}, {"axis": np.array(1, np.int64)}, opset=14)],
    ("", "CumProd"): [_model("CumProd", {"x": X}, {"axis": np.array(1, np.int64)}, opset=26)],
    ("", "DeformConv"): [_model("DeformConv", {"x": (1, 4, 7, 7), "offset": (1, 2 * 9, 5, 5), "mask": (1, 9, 5, 5)},
                                {"w": _f(6, 4, 3, 3), "b": _f(6)}, order=["x", "w", "offset", "b", "mask"])],
    ("", "DynamicQuantizeLinear"): [_model("DynamicQuantizeLinear", {"x": (3, 4)}, outputs=3, opset=11)],
    ("", "Einsum"): [_model("Einsum", {"a": (2, 3, 4)}, equation="bij->bj", opset=12),
                     _model("Einsum", {"a": (2, 3, 4), "b": (2, 4, 5)}, equation="bij,bjk->bik", opset=12)],
    ("", "Gemm"): [_model("Gemm", {"a": (3, 4)}, {"b": _f(4, 5), "c": _f(5)})],
    ("", "GridSample"): [_model("GridSample", {"x": (1, 2, 4, 4), "grid": (1, 3, 3, 2)}, opset=20)],
    ("", "GroupNormalization"): [_model("GroupNormalization", {"x": X}, {"s": _f(3), "b": _f(3)}, num_groups=3,
                                        opset=21)],
    ("", "LRN"): [_model("LRN", {"x": X}, size=3, opset=13)],
    ("", "MatMul"): [_model("MatMul", {"a": (2, 3, 4)}, {"b": _f(4, 5)})],
    ("", "MatMulInteger"): [_model("MatMulInteger", {"a": ((3, 4), U8)}, {"b": np.ones((4, 5), np.uint8)})],
    ("", "QLinearMatMul"): [_model("QLinearMatMul", {"a": ((3, 4), U8)},
                                   {"as": _scale(), "az": _zp(), "b": np.ones((4, 5), np.uint8), "bs": _scale(),
                                    "bz": _zp(), "ys": _scale(), "yz": _zp()})],
    ("", "MaxRoiPool"): [_model("MaxRoiPool", {"x": (1, 4, 16, 16), "rois": (5, 5)}, pooled_shape=[2, 3])],
    ("", "Resize"): [_model("Resize", {"x": X}, {"scales": np.array([1, 1, 2, 2], np.float32)},
                            order=["x", "", "scales"], mode="linear", opset=19)],
    ("", "Upsample"): [_model("Upsample", {"x": X}, {"scales": np.array([1, 1, 2, 2], np.float32)}, mode="linear",
                              opset=9)],
    ("", "RoiAlign"): [_model("RoiAlign", {"x": (2, 4, 16, 16), "rois": (7, 4), "idx": ((7,), I64)}, opset=16,
                              sampling_ratio=2, output_height=3, output_width=5)],
    ("", "RotaryEmbedding"): [_model("RotaryEmbedding", {"x": (1, 2, 3, 8), "cos": (1, 3, 4), "sin": (1, 3, 4)},
                                     opset=23)],
    ("", "TopK"): [_model("TopK", {"x": X}, {"k": _i64(2)}, outputs=2, opset=11)],
    ("", "Reshape"): [_model("Reshape", {"x": X}, {"shape": _i64(6, 20)})],
    ("", "LSTM"): [_lstm(), _lstm(clip=3.0, activations=["HardSigmoid", "Relu", "Softsign"] * 2),
                   _model("LSTM", {"x": (3, 2, 5)}, {"w": _f(1, 16, 5), "r": _f(1, 16, 4)}, hidden_size=4)],
    ("", "GRU"): [_model("GRU", {"x": (3, 2, 5)}, {"w": _f(1, 12, 5), "r": _f(1, 12, 4), "b": _f(1, 24)},
                         hidden_size=4, linear_before_reset=1)],
    ("", "RNN"): [_model("RNN", {"x": (3, 2, 5)}, {"w": _f(2, 4, 5), "r": _f(2, 4, 4)}, hidden_size=4,
                         direction="bidirectional", activations=["Relu", "Sigmoid"])],
    ("", "Attention"): [_model("Attention", {"q": (2, 8, 5, 16), "k": (2, 2, 3, 16), "v": (2, 2, 3, 12),
                                             "mask": (5, 3)}, opset=23, softcap=30.0)],
    ("", "SimplifiedLayerNormalization"): [_model("SimplifiedLayerNormalization", {"x": (2, 3, 8)}, {"s": _f(8)})],
    # onnxruntime's com.microsoft ops (docs/ContribOperators.md)
    (MS, "Attention"): [_model("Attention", {"x": (2, 10, 32)}, {"w": _f(32, 72), "b": _f(72)}, domain=MS,
                               num_heads=4)],
    (MS, "MultiHeadAttention"): [_model("MultiHeadAttention", {"q": (2, 5, 32), "k": (2, 7, 32), "v": (2, 7, 32)},
                                        {"bias": _f(96)}, domain=MS, num_heads=4)],
    (MS, "GroupQueryAttention"): [_model(
        "GroupQueryAttention", {"q": (1, 3, 128), "k": (1, 3, 32), "v": (1, 3, 32), "pk": (1, 2, 5, 16),
                                "pv": (1, 2, 5, 16), "seqlens": ((1,), I32), "cos": (8, 8), "sin": (8, 8)},
        {"total": np.array(8, np.int32)}, order=["q", "k", "v", "pk", "pv", "seqlens", "total", "cos", "sin"],
        domain=MS, num_heads=8, kv_num_heads=2, do_rotary=1)],
    (MS, "BiasAdd"): [_model("BiasAdd", {"x": (1, 4, 8), "skip": (1, 4, 8)}, {"b": _f(8)}, order=["x", "b", "skip"],
                             domain=MS)],
    (MS, "BiasGelu"): [_model("BiasGelu", {"a": (2, 8)}, {"b": _f(8)}, domain=MS)],
    (MS, "BiasSoftmax"): [_model("BiasSoftmax", {"a": (2, 4), "b": (2, 4)}, domain=MS, axis=1)],
    (MS, "FastGelu"): [_model("FastGelu", {"a": (2, 8)}, {"b": _f(8)}, domain=MS)],
    (MS, "Gelu"): [_model("Gelu", {"a": (2, 8)}, domain=MS)],
    (MS, "QuickGelu"): [_model("QuickGelu", {"a": (2, 8)}, domain=MS)],
    (MS, "FusedConv"): [_model("FusedConv", {"x": (1, 3, 6, 6), "z": (1, 4, 4, 4)}, {"w": _f(4, 3, 3, 3), "b": _f(4)},
                               order=["x", "w", "b", "z"], domain=MS, activation="Sigmoid"),
                        _model("FusedConv", {"x": (1, 3, 6, 6)}, {"w": _f(4, 3, 3, 3)}, domain=MS,
                               activation="Clip", activation_params=[0.0, 6.0])],
    (MS, "FusedGemm"): [_model("FusedGemm", {"a": (3, 4)}, {"b": _f(4, 5), "c": _f(5)}, domain=MS,
                               activation="LeakyRelu", activation_alpha=0.1)],
    (MS, "FusedMatMul"): [_model("FusedMatMul", {"a": (2, 3, 4)}, {"b": _f(2, 5, 4)}, domain=MS, transB=1)],
    (MS, "MatMulIntegerToFloat"): [_model("MatMulIntegerToFloat", {"a": ((2, 4), U8)},
                                          {"b": np.ones((4, 3), np.int8), "as": _scale(), "bs": _scale(),
                                           "az": _zp(), "bz": _zp(np.int8), "bias": _f(3)}, domain=MS)],
    (MS, "DynamicQuantizeMatMul"): [_model("DynamicQuantizeMatMul", {"a": (2, 4)},
                                           {"b": np.ones((4, 3), np.int8), "bs": _scale(), "bz": _zp(np.int8),
                                            "bias": _f(3)}, domain=MS)],
    (MS, "QGemm"): [_model("QGemm", {"a": ((3, 4), U8)},
                           {"as": _scale(), "az": _zp(), "b": np.ones((4, 5), np.uint8), "bs": _scale(), "bz": _zp(),
                            "c": np.ones(5, np.int32), "ys": _scale(), "yz": _zp()}, domain=MS)],
    (MS, "QLinearAdd"): [_model("QLinearAdd", {"a": (X, U8), "b": (X, U8)},
                                {"as": _scale(), "az": _zp(), "bs": _scale(), "bz": _zp(), "ys": _scale(), "yz": _zp()},
                                order=["a", "as", "az", "b", "bs", "bz", "ys", "yz"], domain=MS)],
    (MS, "QLinearMul"): [_model("QLinearMul", {"a": (X, U8), "b": (X, U8)},
                                {"as": _scale(), "az": _zp(), "bs": _scale(), "bz": _zp(), "ys": _scale(), "yz": _zp()},
                                order=["a", "as", "az", "b", "bs", "bz", "ys", "yz"], domain=MS)],
    (MS, "QLinearAveragePool"): [_qlinear("QLinearAveragePool", kernel_shape=[2, 2])],
    (MS, "QLinearGlobalAveragePool"): [_qlinear("QLinearGlobalAveragePool", channels_last=0)],
    (MS, "QLinearLeakyRelu"): [_qlinear("QLinearLeakyRelu")],
    (MS, "QLinearSigmoid"): [_qlinear("QLinearSigmoid")],
    (MS, "QLinearSoftmax"): [_qlinear("QLinearSoftmax", opset=13)],
    (MS, "QLinearConcat"): [_model("QLinearConcat", {"a": (X, U8)}, {"ys": _scale(), "yz": _zp(), "as": _scale(),
                                                                      "az": _zp()}, order=["ys", "yz", "a", "as", "az"],
                                   domain=MS, axis=1)],
    (MS, "LayerNormalization"): [_model("LayerNormalization", {"x": (2, 3, 8)}, {"s": _f(8), "b": _f(8)}, domain=MS)],
    (MS, "SimplifiedLayerNormalization"): [_model("SimplifiedLayerNormalization", {"x": (2, 3, 8)}, {"s": _f(8)},
                                                  domain=MS)],
    (MS, "SkipLayerNormalization"): [_model("SkipLayerNormalization", {"x": (2, 3, 8), "skip": (2, 3, 8)},
                                            {"g": _f(8), "beta": _f(8), "bias": _f(8)}, domain=MS)],
    (MS, "SkipSimplifiedLayerNormalization"): [_model("SkipSimplifiedLayerNormalization",
                                                      {"x": (2, 3, 8), "skip": (2, 3, 8)}, {"g": _f(8), "bias": _f(8)},
                                                      domain=MS)],
    (MS, "RotaryEmbedding"): [_model("RotaryEmbedding", {"x": (1, 2, 3, 8), "pos": ((1, 3), I64), "cos": (8, 4),
                                                         "sin": (8, 4)}, domain=MS)],
}
# Ops with no work beyond their MACs (or none at all): their cases must give flops == 2·macs, not more.
NO_OTHER_WORK = {"AffineGrid", "MatMul", "MatMulInteger", "QLinearMatMul", "ConvInteger", "FusedMatMul", "Reshape",
                 "QLinearConcat", "DepthToSpace", "SpaceToDepth", "MaxUnpool"}


def _default(op_type):
    """The op on float inputs of shape X, one per required input, at the opset of its newest schema."""
    schema = onnx.defs.get_schema(op_type)
    required = [parameter for parameter in schema.inputs
                if parameter.option != onnx.defs.OpSchema.FormalParameterOption.Optional]
    opset = schema.since_version - 1 if schema.deprecated else schema.since_version
    return _model(op_type, {f"x{index}": X for index in range(max(len(required), 1))}, opset=max(opset, 7))


def _keys():
    """Every (domain, op_type) with a rule; ai.onnx is the default domain's alias (the same rule, checked below)."""
    return [(domain, op_type) for domain, op_type in registered_ops()
            if domain != "ai.onnx" and find_rule(domain, op_type) is not data_movement]


def _cases(key):
    return CASES.get(key) or [_default(key[1])]


def _check(model):
    """The layer "node" of `model`, after checking every layer: flops = 2·macs + its parts, bias its bias part."""
    result = analyze(load_model(model))
    for layer in result.layers:
        parts = layer.flops_by_category
        assert layer.flops == 2 * layer.macs + sum(parts.values()), (layer.op_type, layer.flops, layer.macs, parts)
        assert set(parts) <= set(CATEGORIES) and all(value > 0 for value in parts.values()), parts
        assert layer.bias_flops == parts.get("bias", 0), layer.op_type
    subtotals = convention_totals(result, list(CATEGORIES)).subtotals
    assert result.totals.flops == 2 * result.totals.macs + sum(subtotals.values())
    return next(layer for layer in result.layers if layer.name == "node")


@pytest.mark.parametrize("key", _keys(), ids=lambda key: "::".join(part for part in key if part))
def test_every_rule_puts_every_flop_in_macs_or_one_category(key):
    layers = [_check(model) for model in _cases(key)]
    # MaxRoiPool's bins depend on the ROI values: a lower bound, status shape_unknown
    assert all(layer.status in ("counted", "zero_by_convention", "shape_unknown") for layer in layers), key
    if key[1] in NO_OTHER_WORK:
        assert all(layer.flops == 2 * layer.macs for layer in layers), key
    else:   # a case exercises the op's non-MAC work (cases that count nothing would prove nothing)
        assert any(layer.flops > 2 * layer.macs for layer in layers), key


def test_the_default_domain_alias_shares_rules_and_categories():
    for domain, op_type in registered_ops():
        if domain == "ai.onnx":
            alias, rule = find_rule(domain, op_type), find_rule("", op_type)   # checked rules are wrapped
            assert getattr(alias, "__wrapped__", alias) is getattr(rule, "__wrapped__", rule)
            assert op_category(domain, op_type) == op_category("", op_type)


def test_data_movement_ops_have_no_flops():
    moved = [op_type for domain, op_type in registered_ops() if find_rule(domain, op_type) is data_movement]
    assert "Transpose" in moved and "Concat" in moved
    assert all(op_category("", op_type) is None for op_type in moved)
    layer = _check(_model("Transpose", {"x": X}, perm=[0, 2, 3, 1]))
    assert (layer.status, layer.flops, layer.flops_by_category) == ("zero_by_convention", 0, {})


def test_every_op_in_a_category_has_a_rule():
    ruled = set(registered_ops())
    assert all(("", op_type) in ruled for op_types in CATEGORIES.values() for op_type in op_types)
    assert all((MS, op_type) in ruled for op_types in CONTRIB_CATEGORIES.values() for op_type in op_types)
    assert set(CONTRIB_CATEGORIES) <= set(CATEGORIES)


# -- hand counts of the work that was in FLOPs nowhere before -------------------------------------------
def test_lstm_counts_its_gate_activations_and_cell_update():
    # T=3, B=2, H=4, both directions: 24 unit-steps per direction (ONNX LSTM-14 equations)
    steps, macs, bias = 3 * 2 * 4, 3 * 2 * 2 * 16 * (5 + 4), 3 * 2 * 2 * 16 * 2
    layer = _check(_lstm())
    activation = 2 * steps * (3 * 4 + 1 + 1)   # i, f, o: Sigmoid (4); c: Tanh (1); h(Ct): Tanh (1)
    elementwise = 2 * steps * (3 + 1 + 6)      # f⊙C + i⊙c; o⊙h(C); peepholes P⊙C + per gate i, f, o
    assert layer.macs == macs
    assert layer.flops_by_category == {"bias": bias, "activation": activation, "elementwise": elementwise}
    clipped = _check(_lstm(clip=3.0, activations=["HardSigmoid", "Relu", "Softsign"] * 2))
    activation = 2 * steps * (3 * 3 + 1 + 1) + 2 * 2 * steps * 5   # + clip's min and max on the 5 inputs
    assert clipped.flops_by_category["activation"] == activation


def test_gru_and_rnn_count_their_gates():
    gru = _check(CASES[("", "GRU")][0])   # T=3, B=2, H=4, one direction
    steps = 3 * 2 * 4
    assert gru.flops_by_category == {"bias": 3 * 2 * 12 * 2, "activation": steps * (2 * 4 + 1),   # z, r; h
                                     "elementwise": steps * 5}   # r ⊙, 1 − z, ⊙ h, z ⊙ H, +
    rnn = _check(CASES[("", "RNN")][0])   # both directions, Relu forward (1), Sigmoid backward (4)
    assert rnn.flops_by_category == {"activation": steps * (1 + 4)}
    assert rnn.flops == 2 * rnn.macs + steps * 5


def test_fused_gemm_and_fused_conv_count_their_activation():
    gemm = _check(CASES[(MS, "FusedGemm")][0])   # 3×5 outputs, LeakyRelu: 2 each
    assert gemm.flops_by_category == {"bias": 15, "activation": 2 * 15}
    conv, clipped = (_check(model) for model in CASES[(MS, "FusedConv")])   # 1×4×4×4 outputs
    assert conv.flops_by_category == {"bias": 64, "activation": 4 * 64, "elementwise": 64}   # Sigmoid; + Z
    assert clipped.flops_by_category == {"activation": 2 * 64}   # Clip: min and max


def test_count_resize_and_reduction_hold_a_grid_sample_and_a_reduce_mean():
    model = _model("GridSample", {"x": (1, 2, 4, 4), "grid": (1, 3, 3, 2)}, opset=20)
    mean = helper.make_node("ReduceMean", ["y"], ["m"], name="mean", keepdims=0)
    model.graph.node.append(mean)
    result = analyze(load_model(model))
    subtotals = convention_totals(result, ["resize", "reduction"])
    sampled = 7 * 2 * 3 * 3 + 2 * 2 * 3 * 3   # bilinear per output value; unnormalize per grid point and axis
    assert subtotals.subtotals["resize"] == sampled and subtotals.subtotals["reduction"] == 2 * 3 * 3
    assert subtotals.macs == sampled + 2 * 3 * 3
