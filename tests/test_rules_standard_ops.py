"""Cost rules for the standard ONNX ops that had none (breaker R10 c): DeformConv, RoiAlign, MaxRoiPool, MaxUnpool,
CenterCropPad, LRN, CumSum/CumProd, Hardmax, Swish/SwiGLU, Shrink, the trigonometric and bitwise ops,
RotaryEmbedding, AffineGrid, CausalConvWithState. Output shapes are checked against onnxruntime where it runs the op,
counts against hand counts of each op's formula."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.defs
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.analyzer.rules import registered_ops
from segcost.frontends.onnx import load_model

F = TensorProto.FLOAT


def _model(nodes, inputs, inits=(), opset=22):
    nodes = nodes if isinstance(nodes, list) else [nodes]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_value_info("y", onnx.TypeProto())], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _run(model, feeds):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _layer(model):
    result = analyze(load_model(model))
    return result.layers[-1]


def _vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _deform_model(x, w, out, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, offset_group=1,
                  bias=False, mask=False):
    taps = w[2] * w[3]
    inputs = [_vi("x", x), _vi("w", w), _vi("offset", (x[0], 2 * offset_group * taps, *out))]
    names = ["x", "w", "offset"]
    if bias:
        inputs.append(_vi("b", (w[0],)))
    names.append("b" if bias else "")
    if mask:
        inputs.append(_vi("mask", (x[0], offset_group * taps, *out)))
        names.append("mask")
    node = helper.make_node("DeformConv", names, ["y"], strides=list(strides), pads=list(pads),
                            dilations=list(dilations), group=group, offset_group=offset_group, name="dc")
    return _model(node, inputs, opset=22)


@pytest.mark.parametrize("x,w,out,kw", [
    ((1, 4, 8, 8), (6, 4, 3, 3), (6, 6), {}),
    ((2, 4, 9, 7), (8, 2, 3, 3), (5, 4), {"strides": (2, 2), "pads": (1, 1, 1, 1), "group": 2, "offset_group": 2,
                                          "bias": True, "mask": True}),
    ((1, 6, 10, 10), (6, 1, 3, 2), (6, 9), {"dilations": (2, 1), "group": 6, "offset_group": 3, "mask": True}),
])
def test_deform_conv_counts_conv_macs_plus_bilinear_sampling(x, w, out, kw):
    model = _deform_model(x, w, out, **kw)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input}
    layer = _layer(model)
    assert layer.status == "counted"
    assert layer.output_shape == list(_run(model, feeds).shape) == [x[0], w[0], *out]
    taps = w[2] * w[3]
    # the conv part: a GEMM of (C_out/g) × (C_in/g·kh·kw) over N·H_out·W_out columns per group — torchvision's
    # deform_conv2d CPU kernel (deformable_im2col + addmm), the Conv formula of DESIGN.md
    macs = x[0] * w[0] * out[0] * out[1] * w[1] * taps
    sampled = x[0] * x[1] * out[0] * out[1] * taps            # one bilinear sample per input channel and tap
    points = x[0] * kw.get("offset_group", 1) * out[0] * out[1] * taps   # offsets shared by an offset group
    flops = 7 * sampled + 2 * points + (sampled if kw.get("mask") else 0)
    flops += x[0] * w[0] * out[0] * out[1] if kw.get("bias") else 0
    assert (layer.macs, layer.flops) == (macs, 2 * macs + flops)


def test_deform_conv_with_zero_offsets_is_the_conv_it_counts_like():
    # onnxruntime: DeformConv with zero offsets equals Conv; segcost: the same MACs as that Conv
    x, w = (1, 4, 8, 8), (6, 4, 3, 3)
    deform = _deform_model(x, w, (6, 6))
    conv = _model(helper.make_node("Conv", ["x", "w"], ["y"], name="c"), [_vi("x", x), _vi("w", w)], opset=22)
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal(x).astype(np.float32), "w": rng.standard_normal(w).astype(np.float32)}
    np.testing.assert_allclose(_run(deform, {**feeds, "offset": np.zeros((1, 18, 6, 6), np.float32)}),
                               _run(conv, feeds), rtol=1e-5, atol=1e-5)
    assert _layer(deform).macs == _layer(conv).macs


def test_deform_conv_agrees_with_torchvision():
    torchvision = pytest.importorskip("torchvision")
    torch = pytest.importorskip("torch")
    x, w, out = (1, 4, 7, 7), (6, 2, 3, 3), (4, 4)
    model = _deform_model(x, w, out, strides=(2, 2), pads=(1, 1, 1, 1), group=2, offset_group=2, mask=True)
    rng = np.random.default_rng(2)
    feeds = {"x": rng.standard_normal(x), "w": rng.standard_normal(w), "offset": rng.standard_normal((1, 36, *out)),
             "mask": rng.random((1, 18, *out))}
    feeds = {name: value.astype(np.float32) for name, value in feeds.items()}
    expected = torchvision.ops.deform_conv2d(*(torch.from_numpy(feeds[n]) for n in ("x", "offset", "w")),
                                             stride=2, padding=1, mask=torch.from_numpy(feeds["mask"])).numpy()
    np.testing.assert_allclose(_run(model, feeds), expected, rtol=1e-4, atol=1e-4)   # same op, same sampled values


@pytest.mark.parametrize("mode,ratio,status", [("avg", 2, "counted"), ("max", 3, "counted"),
                                               ("avg", 0, "shape_unknown")])
def test_roi_align(mode, ratio, status):
    node = helper.make_node("RoiAlign", ["x", "rois", "idx"], ["y"], mode=mode, sampling_ratio=ratio,
                            output_height=3, output_width=5, name="ra")
    model = _model(node, [_vi("x", (2, 4, 16, 16)), _vi("rois", (7, 4)), _vi("idx", (7,), TensorProto.INT64)],
                   opset=16)
    rois = np.array([[0, 0, 8, 8]] * 7, np.float32)
    out = _run(model, {"x": np.ones((2, 4, 16, 16), np.float32), "rois": rois, "idx": np.zeros(7, np.int64)})
    layer = _layer(model)
    assert layer.output_shape == list(out.shape) == [7, 4, 3, 5]
    samples = max(ratio, 1) ** 2
    reduce = samples if mode == "avg" else samples - 1
    assert (layer.status, layer.macs) == (status, 0)
    assert layer.flops == 7 * 4 * 3 * 5 * (7 * samples + reduce) + 4 * 7 * 3 * 5 * samples


def test_max_roi_pool_is_a_lower_bound():
    node = helper.make_node("MaxRoiPool", ["x", "rois"], ["y"], pooled_shape=[2, 3], name="mrp")
    model = _model(node, [_vi("x", (1, 4, 16, 16)), _vi("rois", (5, 5))], opset=22)
    layer = _layer(model)
    assert onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert layer.output_shape == [5, 4, 2, 3]
    assert (layer.status, layer.flops) == ("shape_unknown", 5 * 4 * 2 * 3)


def test_max_unpool_and_center_crop_pad_move_data():
    pool = helper.make_node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2], name="pool")
    unpool = helper.make_node("MaxUnpool", ["p", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2], name="unpool")
    model = _model([pool, unpool], [_vi("x", (1, 3, 8, 6))], opset=22)
    out = _run(model, {"x": np.ones((1, 3, 8, 6), np.float32)})
    layer = _layer(model)
    assert layer.output_shape == list(out.shape) == [1, 3, 8, 6] and layer.status == "zero_by_convention"
    crop = helper.make_node("CenterCropPad", ["x", "shape"], ["y"], axes=[2, 3], name="ccp")
    model = _model(crop, [_vi("x", (1, 3, 8, 6))], [numpy_helper.from_array(np.array([5, 9], np.int64), "shape")],
                   opset=18)
    out = _run(model, {"x": np.ones((1, 3, 8, 6), np.float32)})
    layer = _layer(model)
    assert layer.output_shape == list(out.shape) == [1, 3, 5, 9] and layer.status == "zero_by_convention"


@pytest.mark.parametrize("channels,size", [(5, 3), (6, 4), (3, 5), (1, 1)])
def test_lrn_counts_the_clipped_channel_windows(channels, size):
    model = _model(helper.make_node("LRN", ["x"], ["y"], size=size, name="lrn"), [_vi("x", (2, channels, 4, 3))],
                   opset=13)
    layer = _layer(model)
    assert layer.output_shape == [2, channels, 4, 3]
    if size % 2:   # onnxruntime's LRN takes odd sizes only; the spec's window formula covers both
        assert list(_run(model, {"x": np.ones((2, channels, 4, 3), np.float32)}).shape) == layer.output_shape
    # the spec's window: max(0, c − floor((size−1)/2)) ≤ i ≤ min(C−1, c + ceil((size−1)/2))
    terms = [len(range(max(0, c - (size - 1) // 2), min(channels - 1, c + int(np.ceil((size - 1) / 2))) + 1))
             for c in range(channels)]
    elements = 2 * channels * 4 * 3
    assert layer.flops == 5 * elements + 2 * 4 * 3 * sum(t - 1 for t in terms)


@pytest.mark.parametrize("op_type,exclusive,axis,per_row", [("CumSum", 0, 1, 4), ("CumSum", 1, -1, 4),
                                                            ("CumProd", 0, 0, 1)])
def test_cumulative_ops(op_type, exclusive, axis, per_row):
    shape = (2, 5, 6)
    node = helper.make_node(op_type, ["x", "axis"], ["y"], exclusive=exclusive, name="cum")
    model = _model(node, [_vi("x", shape)], [numpy_helper.from_array(np.array(axis, np.int64), "axis")], opset=26)
    if op_type == "CumSum":
        model.opset_import[0].version = 14
        assert list(_run(model, {"x": np.ones(shape, np.float32)}).shape) == list(shape)
    layer = _layer(model)
    assert layer.output_shape == list(shape)
    assert (layer.status, layer.flops) == ("counted", (60 // shape[axis]) * per_row)


@pytest.mark.parametrize("op_type,attrs,opset,per_element", [
    ("Swish", {}, 24, 5), ("Swish", {"alpha": 1.702}, 24, 6), ("Shrink", {}, 9, 2), ("Acos", {}, 22, 1),
    ("Atanh", {}, 22, 1), ("Tan", {}, 22, 1), ("Hardmax", {"axis": 1}, 13, 1)])
def test_elementwise_and_hardmax(op_type, attrs, opset, per_element):
    model = _model(helper.make_node(op_type, ["x"], ["y"], name="op", **attrs), [_vi("x", (2, 3, 4))], opset=opset)
    out = _run(model, {"x": np.full((2, 3, 4), 0.5, np.float32)})
    layer = _layer(model)
    assert layer.output_shape == list(out.shape) and layer.flops == per_element * 24


def test_swiglu_and_bitwise():
    swiglu = _model(helper.make_node("SwiGLU", ["a", "b"], ["y"], name="op"), [_vi("a", (2, 8)), _vi("b", (2, 8))],
                    opset=28)
    assert _layer(swiglu).flops == 6 * 16   # Swish's 5 + the gate multiply
    bitwise = _model(helper.make_node("BitwiseXor", ["a", "b"], ["y"], name="op"),
                     [_vi("a", (4, 4), TensorProto.INT32), _vi("b", (4, 4), TensorProto.INT32)], opset=18)
    layer = _layer(bitwise)
    assert layer.flops == 16 and list(_run(bitwise, {"a": np.ones((4, 4), np.int32),
                                                      "b": np.ones((4, 4), np.int32)}).shape) == [4, 4]


@pytest.mark.parametrize("x,attrs,rotated", [((1, 2, 3, 8), {}, 8), ((1, 3, 16), {"num_heads": 2}, 8),
                                             ((1, 2, 3, 8), {"rotary_embedding_dim": 4}, 4)])
def test_rotary_embedding(x, attrs, rotated):
    inputs = [_vi("x", x), _vi("cos", (1, 3, rotated // 2)), _vi("sin", (1, 3, rotated // 2))]
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin"], ["y"], name="rope", **attrs)
    model = _model(node, inputs, opset=23)
    layer = _layer(model)
    head = x[-1] if len(x) == 4 else x[-1] // attrs["num_heads"]
    assert layer.flops == 3 * (int(np.prod(x)) // head) * rotated


def test_affine_grid_is_a_batched_matmul():
    size = numpy_helper.from_array(np.array([2, 3, 5, 7], np.int64), "size")
    model = _model(helper.make_node("AffineGrid", ["theta", "size"], ["y"], name="ag"), [_vi("theta", (2, 2, 3))],
                   [size], opset=20)
    out = _run(model, {"theta": np.ones((2, 2, 3), np.float32)})
    layer = _layer(model)
    # torch.nn.functional.affine_grid: base_grid (N, H·W, 3) @ thetaᵀ (N, 3, 2)
    assert layer.output_shape == list(out.shape) == [2, 5, 7, 2] and layer.macs == 2 * 5 * 7 * 3 * 2


def test_causal_conv_with_state():
    node = helper.make_node("CausalConvWithState", ["x", "w", "b"], ["y", "state"], activation="silu", name="cc")
    model = _model(node, [_vi("x", (2, 4, 6)), _vi("w", (4, 1, 3)), _vi("b", (4,))], opset=27)
    layer = _layer(model)
    assert (layer.macs, layer.flops) == (48 * 3, 2 * 48 * 3 + 48 + 5 * 48)


# Standard ops still without a rule, each with the reason (a newer onnx that adds an op fails this test).
NO_RULE = {
    "If": "control flow: analyzer.control_flow", "Loop": "control flow", "Scan": "control flow",
    "SequenceMap": "control flow over a sequence (a subgraph per element)",
    "Bernoulli": "random generator", "Multinomial": "random generator", "RandomNormal": "random generator",
    "RandomNormalLike": "random generator", "RandomUniform": "random generator",
    "RandomUniformLike": "random generator",
    "BlackmanWindow": "signal window generator", "HammingWindow": "signal window generator",
    "HannWindow": "signal window generator", "MelWeightMatrix": "filter bank generator",
    "DFT": "FFT cost depends on the algorithm", "STFT": "FFT cost depends on the algorithm",
    "Det": "LU cost depends on the algorithm",
    "NonMaxSuppression": "data-dependent (boxes kept)", "Unique": "data-dependent (sort)",
    "NegativeLogLikelihoodLoss": "training loss", "SoftmaxCrossEntropyLoss": "training loss",
    "ImageDecoder": "decodes bytes", "RegexFullMatch": "strings", "StringConcat": "strings",
    "StringNormalizer": "strings", "StringSplit": "strings", "TfIdfVectorizer": "text n-grams",
    "LinearAttention": "recurrent state update (opset 27): not yet",
}


def test_every_standard_op_has_a_rule_or_a_stated_reason():
    standard = {schema.name for schema in onnx.defs.get_all_schemas() if schema.domain in ("", "ai.onnx")}
    ruled = {op for domain, op in registered_ops() if domain in ("", "ai.onnx")}
    assert sorted(standard - ruled - set(NO_RULE)) == []
    assert sorted(set(NO_RULE) & ruled) == []
