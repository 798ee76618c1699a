"""A MAC layer's non-MAC flops by --count category: bias adds are "bias", the rest is the category of the
op it stands for (DeformConv's sampling "resize", a fused attention's softmax "activation", its scale and
masks "elementwise"), and an If/Loop/Scan layer's split is its subgraphs'. Every expected split is a hand
count of the rule's formula; the totals still add up (flops = 2·macs + the parts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.analyzer.conventions import CATEGORIES, convention_totals, split_flops
from segcost.frontends.onnx import load_model
from segcost.reports.analysis import render
from tests.conftest import single_op_model, weight

F = TensorProto.FLOAT


def _vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, None if shape is None else list(shape))


def _model(nodes, inputs, outputs, inits=(), opset=22, domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(domain, 1) for domain in domains)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


def _subtotals(model):
    """(the layer named "node", the model's category subtotals), both checked against the invariants."""
    result = analyze(load_model(model))
    for layer in result.layers:   # flops = 2·macs + the parts; bias is the "bias" part
        assert sum(layer.flops_by_category.values()) == layer.flops - 2 * layer.macs, layer.name
        assert layer.bias_flops == layer.flops_by_category.get("bias", 0), layer.name
        assert all(value > 0 for value in layer.flops_by_category.values())
    lazy = analyze(load_model(model))
    subtotals = convention_totals(lazy, []).subtotals
    assert not lazy.layers.materialized   # summed per signature ...
    assert subtotals == convention_totals(result, []).subtotals   # ... as over the objects
    layer = next(layer for layer in result.layers if layer.name == "node")
    return layer, subtotals


def _only(**parts):
    return {name: parts.get(name, 0) for name in CATEGORIES}


# -- DeformConv ---------------------------------------------------------------------------------------
def deform_model():
    """DeformConv x (2, 4, 9, 7), w (8, 2, 3, 3), group 2, offset_group 2, stride 2, pad 1 → (2, 8, 5, 4)."""
    x, w, out = (2, 4, 9, 7), (8, 2, 3, 3), (5, 4)
    inputs = [_vi("x", x), _vi("w", w), _vi("offset", (2, 2 * 2 * 9, *out)), _vi("b", (8,)),
              _vi("mask", (2, 2 * 9, *out))]
    node = helper.make_node("DeformConv", ["x", "w", "offset", "b", "mask"], ["y"], name="node", strides=[2, 2],
                            pads=[1, 1, 1, 1], group=2, offset_group=2)
    return _model([node], inputs, [_vi("y", None)])


def test_deform_conv_sampling_is_resize_and_elementwise_not_bias():
    layer, subtotals = _subtotals(deform_model())
    sampled = 2 * 4 * 5 * 4 * 9          # N·C_in·H_out·W_out·taps values, bilinear: 7 each
    points = 2 * 2 * 5 * 4 * 9           # N·offset_group·H_out·W_out·taps, 2 offset adds each
    bias = 2 * 8 * 5 * 4                 # one add per output element
    expected = {"bias": bias, "resize": 7 * sampled, "elementwise": 2 * points + sampled}   # + the mask multiply
    assert layer.macs == 2 * 8 * 5 * 4 * 2 * 9
    assert layer.flops == 2 * layer.macs + sum(expected.values())   # the total is what it was
    assert layer.bias_flops == bias
    assert layer.flops_by_category == expected
    assert subtotals == _only(**expected)


def test_count_bias_adds_only_the_bias_adds_of_a_deform_conv():
    result = analyze(load_model(deform_model()))
    assert convention_totals(result, ["bias"]).macs == result.totals.macs + 2 * 8 * 5 * 4


# -- If / Loop / Scan -----------------------------------------------------------------------------------
def _conv_relu_body():
    """v ← Relu(Conv(v, W, B)), 4 channels at 5×5: per trip 100 bias adds and 100 Relu ops."""
    return helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
         helper.make_node("Conv", ["v", "W", "B"], ["c"], name="body_conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["v_next"], name="body_relu")], "body",
        [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("v", [1, 4, 5, 5])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("v_next", [1, 4, 5, 5])])


def _conv_weights():
    rng = np.random.default_rng(0)
    return [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")]


def test_loop_layer_splits_as_its_body_times_the_trips():
    inits = [*_conv_weights(), numpy_helper.from_array(np.array(3, np.int64), "n"),
             numpy_helper.from_array(np.array(True), "go")]
    node = helper.make_node("Loop", ["n", "go", "x"], ["y"], name="node", body=_conv_relu_body())
    model = _model([node], [_vi("x", [1, 4, 5, 5])], [_vi("y", [1, 4, 5, 5])], inits, opset=17)
    layer, subtotals = _subtotals(model)
    assert layer.macs == 3 * 25 * 4 * 4 * 9
    assert layer.flops == 2 * layer.macs + 3 * (100 + 100)
    assert layer.bias_flops == 3 * 100                      # the body Conv's bias adds, not its Relu
    assert layer.flops_by_category == {"bias": 300, "activation": 300}
    assert subtotals == _only(bias=300, activation=300)
    (entry,) = analyze(load_model(model)).control_flow
    assert entry.flops_by_category == {"bias": 300, "activation": 300}
    assert entry.subgraphs[0].flops_by_category == {"bias": 100, "activation": 100}


def test_count_bias_and_activation_split_the_work_inside_a_loop():
    inits = [*_conv_weights(), numpy_helper.from_array(np.array(3, np.int64), "n"),
             numpy_helper.from_array(np.array(True), "go")]
    node = helper.make_node("Loop", ["n", "go", "x"], ["y"], name="node", body=_conv_relu_body())
    result = analyze(load_model(_model([node], [_vi("x", [1, 4, 5, 5])], [_vi("y", [1, 4, 5, 5])], inits, opset=17)))
    assert convention_totals(result, ["bias"]).macs == result.totals.macs + 3 * 100   # the Conv's bias adds only
    assert convention_totals(result, ["activation"]).macs == result.totals.macs + 3 * 100   # the Relu's


def test_an_unbounded_loop_splits_as_its_one_counted_trip():
    inits = [*_conv_weights(), numpy_helper.from_array(np.array(True), "go")]
    node = helper.make_node("Loop", ["n", "go", "x"], ["y"], name="node", body=_conv_relu_body())
    model = _model([node], [_vi("x", [1, 4, 5, 5]), _vi("n", [], TensorProto.INT64)], [_vi("y", [1, 4, 5, 5])], inits,
                   opset=17)
    layer, subtotals = _subtotals(model)
    assert layer.status == "unbounded"
    assert layer.flops_by_category == {"bias": 100, "activation": 100}
    assert subtotals == _only(bias=100, activation=100)


def test_a_loop_counted_trip_by_trip_sums_its_trips_splits():
    """Trip i multiplies rows [0, i + 1) of X (10, 8) by W (8, 8), then Relu, ReduceSum and two scalar Adds."""
    body = helper.make_graph(
        [helper.make_node("Add", ["i", "one"], ["i1"]), helper.make_node("Unsqueeze", ["i1", "axis"], ["end"]),
         helper.make_node("Slice", ["X", "axis", "end", "axis"], ["rows"]),
         helper.make_node("MatMul", ["rows", "W"], ["r"], name="body_matmul"),
         helper.make_node("Relu", ["r"], ["r1"]), helper.make_node("ReduceSum", ["r1"], ["total"], keepdims=0),
         helper.make_node("Add", ["acc_in", "total"], ["acc_out"]), helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body", [_vi("i", [], TensorProto.INT64), _vi("c_in", [], TensorProto.BOOL), _vi("acc_in", [])],
        [_vi("c_out", [], TensorProto.BOOL), _vi("acc_out", [])],
        [numpy_helper.from_array(np.array(1, np.int64), "one"), numpy_helper.from_array(np.array([0], np.int64),
                                                                                         "axis")])
    inits = [numpy_helper.from_array(np.array(5, np.int64), "M"),
             numpy_helper.from_array(np.array(0, np.float32), "a0"),
             numpy_helper.from_array(np.ones((8, 8), np.float32), "W")]
    model = _model([helper.make_node("Loop", ["M", "", "a0"], ["acc"], name="node", body=body)], [_vi("X", [10, 8])],
                   [_vi("acc", [])], inits, opset=17)
    layer, subtotals = _subtotals(model)
    relu = sum((trip + 1) * 8 for trip in range(5))       # also the ReduceSum's adds, category reduction
    assert layer.macs == sum((trip + 1) * 64 for trip in range(5))
    assert layer.flops_by_category == {"activation": relu, "elementwise": 5 * 2, "reduction": relu}
    assert layer.flops == 2 * layer.macs + 2 * relu + 5 * 2
    assert subtotals == _only(activation=relu, elementwise=10, reduction=relu)
    (entry,) = analyze(load_model(model)).control_flow
    assert entry.counted == "the sum over its trips (shapes change per trip)"


def test_if_layer_splits_as_the_branch_it_counts():
    then_branch = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="then_conv", pads=[1, 1, 1, 1]),
         helper.make_node("Sigmoid", ["c"], ["t"], name="then_sigmoid")], "then", [], [_vi("t", None)])
    else_branch = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["e"], name="else_mul")], "else", [],
                                    [_vi("e", None)])
    node = helper.make_node("If", ["cond"], ["y"], name="node", then_branch=then_branch, else_branch=else_branch)
    model = _model([node], [_vi("x", [1, 4, 5, 5]), _vi("cond", [], TensorProto.BOOL)], [_vi("y", None)],
                   _conv_weights(), opset=17)
    layer, subtotals = _subtotals(model)
    assert layer.macs == 25 * 4 * 4 * 9                      # the then branch: more MACs
    assert layer.flops_by_category == {"bias": 100, "activation": 4 * 100}   # Sigmoid: 4 per element
    assert subtotals == _only(bias=100, activation=400)


def test_scan_layer_splits_as_its_body_times_the_sequence_length():
    # Scan over 6 rows of x (6, 8): state s (3) ← Gemm(row, Wg, Cg) + s, i.e. a bias add and an Add per step
    body = helper.make_graph(
        [helper.make_node("Unsqueeze", ["row", "zero"], ["row2"], name="body_unsqueeze"),
         helper.make_node("Gemm", ["row2", "Wg", "Cg"], ["g"], name="body_gemm"),
         helper.make_node("Reshape", ["g", "three"], ["g1"], name="body_reshape"),
         helper.make_node("Add", ["s", "g1"], ["s_next"], name="body_add")], "body",
        [_vi("s", [3]), _vi("row", [8])], [_vi("s_next", [3])],
        [numpy_helper.from_array(np.array([0], np.int64), "zero"), numpy_helper.from_array(np.array([3], np.int64),
                                                                                            "three")])
    inits = [numpy_helper.from_array(weight(8, 3), "Wg"), numpy_helper.from_array(weight(3), "Cg"),
             numpy_helper.from_array(np.zeros(3, np.float32), "s0")]
    node = helper.make_node("Scan", ["s0", "x"], ["y"], name="node", body=body, num_scan_inputs=1)
    model = _model([node], [_vi("x", [6, 8])], [_vi("y", [3])], inits, opset=17)
    layer, subtotals = _subtotals(model)
    assert layer.macs == 6 * 8 * 3
    assert layer.flops_by_category == {"bias": 6 * 3, "elementwise": 6 * 3}
    assert subtotals == _only(bias=18, elementwise=18)


# -- fused attention --------------------------------------------------------------------------------
def test_onnx_attention_softmax_is_activation_scale_mask_and_softcap_elementwise():
    model = single_op_model("Attention", {"q": [2, 8, 5, 16], "k": [2, 2, 3, 16], "v": [2, 2, 3, 12], "mask": [5, 7],
                                          "pk": [2, 2, 4, 16], "pv": [2, 2, 4, 12]}, opset=23, softcap=30.0)
    layer, subtotals = _subtotals(model)
    scores = 2 * 8 * 5 * 7
    # softmax 4 + softcap's tanh per score; scale, the mask add, softcap's divide and multiply per score
    expected = {"activation": 4 * scores + scores, "elementwise": scores * (1 + 1) + 2 * scores}
    assert layer.flops == 2 * layer.macs + sum(expected.values())
    assert layer.bias_flops == 0
    assert layer.flops_by_category == expected
    assert subtotals == _only(**expected)


def test_microsoft_attention_projection_bias_is_bias_the_rest_is_not():
    model = single_op_model("Attention", {"x": [2, 10, 32]}, {"w": weight(32, 3 * 24), "b": weight(3 * 24)},
                            domain="com.microsoft", num_heads=4)
    layer, subtotals = _subtotals(model)
    scores = 2 * 4 * 10 * 10
    expected = {"bias": 2 * 10 * 72, "activation": 4 * scores, "elementwise": scores}
    assert layer.flops == 2 * layer.macs + sum(expected.values())
    assert layer.flops_by_category == expected and layer.bias_flops == 2 * 10 * 72
    assert subtotals == _only(**expected)


def test_microsoft_multi_head_attention_bias_input_is_bias():
    model = single_op_model("MultiHeadAttention", {"q": [2, 5, 32], "k": [2, 7, 32], "v": [2, 7, 32], "bias": [96]},
                            domain="com.microsoft", num_heads=4)
    layer, _ = _subtotals(model)
    scores = 2 * 4 * 5 * 7
    bias = 2 * 5 * 32 + 2 * 7 * 4 * (8 + 8)   # added to the projected q (B·S·D) and k, v (B·L·N·(H + H_v))
    assert layer.flops_by_category == {"bias": bias, "activation": 4 * scores, "elementwise": scores}
    assert layer.flops == 2 * layer.macs + bias + 5 * scores


def test_microsoft_group_query_attention_rotary_is_elementwise():
    inputs = {"q": [1, 3, 128], "k": [1, 3, 32], "v": [1, 3, 32], "pk": [1, 2, 5, 16], "pv": [1, 2, 5, 16],
              "seqlens": [1], "cos": [8, 8], "sin": [8, 8]}
    model = single_op_model("GroupQueryAttention", inputs, {"total": np.array(8, np.int32)},
                            inputs=["q", "k", "v", "pk", "pv", "seqlens", "total", "cos", "sin"],
                            domain="com.microsoft", num_heads=8, kv_num_heads=2, do_rotary=1)
    layer, _ = _subtotals(model)
    scores = 8 * 3 * 8
    rotary = 3 * 3 * (8 + 2) * 16   # x·cos + rotate(x)·sin on each query and key element
    assert layer.flops_by_category == {"activation": 4 * scores, "elementwise": scores + rotary}
    assert layer.flops == 2 * layer.macs + 5 * scores + rotary


# -- convolutions and matrix products ---------------------------------------------------------------
def test_causal_conv_silu_is_activation():
    node = helper.make_node("CausalConvWithState", ["x", "w", "b"], ["y", "state"], activation="silu", name="node")
    model = _model([node], [_vi("x", (2, 4, 6)), _vi("w", (4, 1, 3)), _vi("b", (4,))],
                   [_vi("y", None), _vi("state", None)], opset=27)
    layer, _ = _subtotals(model)
    assert layer.flops_by_category == {"bias": 48, "activation": 5 * 48}


@pytest.mark.parametrize("op_type,shapes,weights,domain,bias", [
    ("Conv", {"x": [1, 3, 6, 6]}, {"w": weight(5, 3, 3, 3), "b": weight(5)}, "", 5 * 4 * 4),
    ("ConvTranspose", {"x": [1, 3, 4, 4]}, {"w": weight(3, 2, 2, 2), "b": weight(2)}, "", 2 * 5 * 5),
    ("Gemm", {"a": [4, 6]}, {"w": weight(6, 7), "c": weight(7)}, "", 4 * 7),
    ("MatMulIntegerToFloat", {"a": [4, 6]},
     {"w": weight(6, 7).astype(np.int8), "sa": np.float32(1), "sb": np.float32(1), "za": np.int8(0),
      "zb": np.int8(0), "c": weight(7)}, "com.microsoft", 4 * 7),
])
def test_mac_layers_with_a_bias_put_all_their_other_flops_in_bias(op_type, shapes, weights, domain, bias):
    model = single_op_model(op_type, shapes, weights, domain=domain, opset=17)
    if op_type == "MatMulIntegerToFloat":
        model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT8
    layer, subtotals = _subtotals(model)
    assert layer.flops == 2 * layer.macs + bias
    assert layer.flops_by_category == {"bias": bias} and layer.bias_flops == bias
    assert subtotals == _only(bias=bias)


def test_lstm_bias_adds_are_bias():
    # T=5, batch 2, input 3, hidden 4: 4 gates, B holds Wb and Rb (2 adds per gate row and step)
    model = single_op_model("LSTM", {"x": [5, 2, 3]}, {"w": weight(1, 16, 3), "r": weight(1, 16, 4),
                                                        "b": weight(1, 32)}, hidden_size=4)
    layer, _ = _subtotals(model)
    assert layer.macs == 5 * 2 * 16 * (3 + 4)
    # + the gates (ONNX LSTM-14: Sigmoid i, f, o; Tanh c and h(C)) and the cell update (3) and o ⊙ h(C) (1)
    units = 5 * 2 * 4
    assert layer.flops_by_category == {"bias": 5 * 2 * 16 * 2, "activation": units * (3 * 4 + 1 + 1),
                                       "elementwise": units * 4}


# -- reports and the split's own checks --------------------------------------------------------------
def test_reports_carry_the_split():
    result = analyze(load_model(deform_model()))
    document = json.loads(render(result, "json"))
    row = next(layer for layer in document["layers"] if layer["name"] == "node")
    assert row["flops_by_category"] == {"bias": 320, "resize": 10080, "elementwise": 2880}
    assert row["bias_flops"] == 320
    lines = render(analyze(load_model(deform_model())), "csv").splitlines()
    header, cells = lines[0].split(","), lines[1].split(",")
    assert cells[header.index("flops_by_category")] == "bias=320 resize=10080 elementwise=2880"
    assert cells[header.index("bias_flops")] == "320"


def test_split_flops_refuses_an_unknown_category_or_more_than_the_flops():
    assert split_flops("Relu", "", 12) == (("activation", 12),)            # the op type's category holds all
    assert split_flops("ReduceMean", "", 12) == (("reduction", 12),)
    assert split_flops("Custom", "acme", 12) == ()                         # an op in no category
    assert split_flops("RoiAlign", "", 12, 0, (("pooling", 5),)) == (("pooling", 5), ("resize", 7))   # rest: its own
    assert split_flops("X", "", 12, 2, (("resize", 7), ("elementwise", 0))) == (("bias", 2), ("resize", 7))
    with pytest.raises(ValueError, match="no convention category"):
        split_flops("X", "", 12, 0, (("sampling", 7),))
    with pytest.raises(ValueError, match="more than"):
        split_flops("X", "", 12, 6, (("resize", 7),))


def test_every_layer_of_a_model_with_every_kind_of_split_adds_up():
    """Each layer's parts stay inside its flops, and the model's flops are 2·macs + the subtotals + the rest."""
    model = deform_model()
    relu = helper.make_node("Relu", ["y"], ["z"], name="relu")
    model.graph.node.append(relu)
    model.graph.output[0].CopyFrom(_vi("z", None))
    layer, subtotals = _subtotals(model)
    result = analyze(load_model(model))
    assert result.totals.flops == 2 * result.totals.macs + sum(subtotals.values())   # nothing here is uncategorized
    assert subtotals["activation"] == 2 * 8 * 5 * 4
