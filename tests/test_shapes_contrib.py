"""com.microsoft ops (onnxruntime's ORT_ENABLE_EXTENDED fusions and QOperator int8 forms) get
output shapes through segcost.shapes.contrib's shape twins, checked against what onnxruntime
computes when it runs each op; ORT-saved models then count the fp32 original's MACs exactly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.analyzer.rules import find_rule
from segcost.frontends.onnx import load_model
from segcost.shapes import contrib

F, U8, I8, I32 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32
MS = "com.microsoft"
_NP = {F: np.float32, U8: np.uint8, I8: np.int8, I32: np.int32}


def _t(name, dtype, shape, const=False):
    return (name, dtype, tuple(shape), const)


def _scale(name):
    return _t(name, F, (), True)


def _zp(name, dtype=U8):
    return _t(name, dtype, (), True)


def _qargs(*names_dtypes):
    """(x, x_scale, x_zero_point) triples for QLinear ops."""
    out = []
    for name, dtype, shape, const in names_dtypes:
        out += [_t(name, dtype, shape, const), _scale(name + "_s"), _zp(name + "_z", dtype)]
    return out


# op_type -> (inputs as _t tuples in the op's order ("" = absent), attributes, number of outputs, opset)
CASES = {
    "FusedConv": ([_t("x", F, (1, 3, 9, 8)), _t("w", F, (4, 3, 3, 3), True), _t("b", F, (4,), True)],
                  {"activation": "Relu", "pads": [1, 1, 1, 1], "strides": [2, 2]}, 1, 17),
    "FusedGemm": ([_t("a", F, (5, 3)), _t("b", F, (4, 3), True), _t("c", F, (4,), True)],
                  {"transB": 1, "activation": "LeakyRelu", "activation_alpha": 0.1}, 1, 17),
    "FusedMatMul/00": ([_t("a", F, (2, 1, 6, 3)), _t("b", F, (4, 3, 5))], {"alpha": 0.5}, 1, 17),
    "FusedMatMul/10": ([_t("a", F, (2, 1, 3, 6)), _t("b", F, (4, 3, 5))], {"transA": 1}, 1, 17),
    "FusedMatMul/01": ([_t("a", F, (2, 1, 6, 3)), _t("b", F, (4, 5, 3))], {"transB": 1}, 1, 17),
    "FusedMatMul/11": ([_t("a", F, (3, 6)), _t("b", F, (2, 5, 3))], {"transA": 1, "transB": 1}, 1, 17),
    "Gelu": ([_t("x", F, (2, 5, 8))], {}, 1, 17),
    "QuickGelu": ([_t("x", F, (2, 5, 8))], {"alpha": 1.702}, 1, 17),
    "FastGelu": ([_t("x", F, (2, 5, 8)), _t("bias", F, (8,), True)], {}, 1, 17),
    "BiasGelu": ([_t("x", F, (2, 5, 8)), _t("bias", F, (8,), True)], {}, 1, 17),
    "SkipLayerNormalization": ([_t("x", F, (2, 5, 8)), _t("skip", F, (2, 5, 8)), _t("g", F, (8,), True),
                                _t("beta", F, (8,), True)], {"epsilon": 1e-5}, 4, 17),
    "QLinearAdd": (_qargs(_t("a", U8, (1, 4, 6, 6)), _t("b", U8, (1, 4, 1, 6))) + [_scale("y_s"), _zp("y_z")],
                   {}, 1, 17),
    "QLinearMul": (_qargs(_t("a", U8, (1, 4, 6, 6)), _t("b", U8, (4, 1, 1))) + [_scale("y_s"), _zp("y_z")],
                   {}, 1, 17),
    "QLinearSigmoid": (_qargs(_t("x", U8, (1, 4, 6, 6))) + [_scale("y_s"), _zp("y_z")], {}, 1, 17),
    "QLinearLeakyRelu": (_qargs(_t("x", I8, (1, 4, 6, 6))) + [_scale("y_s"), _zp("y_z", I8)], {"alpha": 0.1}, 1, 17),
    "QLinearSoftmax": (_qargs(_t("x", U8, (2, 10))) + [_scale("y_s"), _zp("y_z")], {"axis": -1, "opset": 13}, 1, 17),
    "QLinearConcat": ([_scale("y_s"), _zp("y_z")] + _qargs(_t("x1", U8, (1, 2, 4, 5)), _t("x2", U8, (1, 3, 4, 5))),
                      {"axis": 1}, 1, 17),
    "QLinearAveragePool": (_qargs(_t("x", U8, (1, 4, 9, 8))) + [_scale("y_s"), _zp("y_z")],
                           {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 1, 17),
    "QLinearGlobalAveragePool": (_qargs(_t("x", U8, (1, 4, 9, 8))) + [_scale("y_s"), _zp("y_z")],
                                 {"channels_last": 0}, 1, 17),
    "QGemm": (_qargs(_t("a", U8, (5, 3)), _t("b", I8, (4, 3), True)) + [_t("c", I32, (4,), True), _scale("y_s"),
                                                                         _zp("y_z")], {"transB": 1}, 1, 17),
    "QGemm/float": (_qargs(_t("a", U8, (5, 3)), _t("b", I8, (3, 4), True)), {}, 1, 17),
    "MatMulIntegerToFloat": ([_t("a", U8, (2, 5, 3)), _t("b", I8, (3, 4), True), _scale("a_s"), _scale("b_s"),
                              _zp("a_z"), _zp("b_z", I8)], {}, 1, 17),
    "DynamicQuantizeMatMul": ([_t("a", F, (2, 5, 3)), _t("b", I8, (3, 4), True), _scale("b_s"), _zp("b_z", I8)],
                              {}, 1, 17),
}


def _case_model(case: str) -> onnx.ModelProto:
    op_type = case.split("/")[0]
    inputs, attrs, outputs, opset = CASES[case]
    rng = np.random.default_rng(0)
    graph_inputs, inits = [], []
    for name, dtype, shape, const in inputs:
        if const:
            value = rng.integers(1, 5, shape) if dtype != F else rng.standard_normal(shape) * 0.1 + (shape == ()) * 0.1
            inits.append(numpy_helper.from_array(np.asarray(value, dtype=_NP[dtype]), name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))
    names = [f"out{index}" for index in range(outputs)]
    node = helper.make_node(op_type, [item[0] for item in inputs], names, domain=MS, name="op", **attrs)
    graph = helper.make_graph([node], "g", graph_inputs, [helper.make_value_info(name, onnx.TypeProto())
                                                          for name in names], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)],
                             ir_version=8)


def _run_ort(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], int]]:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = {}
    for value in model.graph.input:
        dtype = _NP[value.type.tensor_type.elem_type]
        shape = [dim.dim_value for dim in value.type.tensor_type.shape.dim]
        data = rng.integers(0, 100, shape) if dtype != np.float32 else rng.standard_normal(shape)
        feeds[value.name] = data.astype(dtype)
    results = session.run(None, feeds)
    to_onnx = {np.dtype(value): key for key, value in _NP.items()}
    return {output.name: (tuple(result.shape), to_onnx[result.dtype])
            for output, result in zip(session.get_outputs(), results)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_twin_gives_the_shape_onnxruntime_computes(case):
    model = _case_model(case)
    expected = _run_ort(model)
    graph = load_model(model)
    twinned = [name for name in expected if name in ("out0", "out3")]
    for name in twinned:
        info = graph.tensors.get(name)
        assert info is not None and info.shape == expected[name][0], (name, info, expected[name])
        assert info.dtype == expected[name][1], (name, info.dtype, expected[name][1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_twinned_op_has_a_cost_rule_and_is_counted(case):
    model = _case_model(case)
    result = analyze(load_model(model))
    assert find_rule(MS, case.split("/")[0]) is not None
    assert result.coverage.unsupported == [] and not result.coverage.shape_unknown


def test_every_twin_is_tested_against_onnxruntime():
    assert {op_type for _, op_type in contrib.TWINS} - {case.split("/")[0] for case in CASES} == {
        "BiasAdd", "BiasSoftmax", "LayerNormalization", "SimplifiedLayerNormalization",
        "SkipSimplifiedLayerNormalization"}  # not in onnxruntime's CPU build: checked by the spec only


def test_fused_matmul_macs_follow_the_transposes():
    # A [3,6] transposed is 6×3, B [2,5,3] transposed is 2×3×5: 2·6·5·3 = 180 MACs
    result = analyze(load_model(_case_model("FusedMatMul/11")))
    assert result.totals.macs == 2 * 6 * 5 * 3


def _plain_convnet() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Sigmoid", ["c2"], ["s2"], name="sig"),
        helper.make_node("Add", ["p1", "s2"], ["a"], name="add"),
        helper.make_node("Conv", ["a", "w3"], ["c3"], strides=[2, 2], name="conv3"),
        helper.make_node("GlobalAveragePool", ["c3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y0"], transB=1, name="fc"),
        helper.make_node("Relu", ["y0"], ["y"], name="relu_fc"),
    ]
    inits = [weight("w1", 8, 3, 3, 3), weight("b1", 8), weight("w2", 8, 8, 3, 3), weight("b2", 8),
             weight("w3", 16, 8, 1, 1), weight("wf", 10, 16), weight("bf", 10)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", F, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_model_onnxruntime_saved_at_extended_level_counts_the_fp32_macs(tmp_path):
    plain = tmp_path / "plain.onnx"
    onnx.save(_plain_convnet(), plain)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "extended.onnx")
    onnxruntime.InferenceSession(str(plain), options, providers=["CPUExecutionProvider"])
    extended = onnx.load(tmp_path / "extended.onnx")
    fused = {node.op_type for node in extended.graph.node if node.domain == MS}
    assert {"FusedConv", "FusedGemm"} <= fused  # what the test is about: ORT wrote its contrib fusions
    expected = analyze(load_model(_plain_convnet())).totals.macs
    result = analyze(load_model(extended))
    assert result.totals.macs == expected == 8 * 32 * 32 * 27 + 8 * 16 * 16 * 72 + 16 * 8 * 8 * 8 + 160
    assert result.coverage.unsupported == [] and not result.coverage.shape_unknown


def test_an_onnxruntime_qoperator_model_counts_the_fp32_macs(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = 2

        def get_next(self):
            if not self.left:
                return None
            self.left -= 1
            return {"x": np.random.default_rng(self.left).standard_normal((1, 3, 32, 32)).astype(np.float32)}

    plain = tmp_path / "plain.onnx"
    onnx.save(_plain_convnet(), plain)
    quantize_static(str(plain), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QOperator)
    quantized = onnx.load(tmp_path / "q.onnx")
    assert {"QLinearAdd"} <= {node.op_type for node in quantized.graph.node if node.domain == MS}
    result = analyze(load_model(quantized))
    assert result.totals.macs == analyze(load_model(_plain_convnet())).totals.macs
    assert result.coverage.unsupported == [] and not result.coverage.shape_unknown


def test_ordinary_models_never_build_twins(monkeypatch):
    def refuse(shell):
        raise AssertionError("with_twins ran on a model inference closes")

    monkeypatch.setattr("segcost.shapes.infer.with_twins", refuse)
    assert analyze(load_model(_plain_convnet())).totals.macs > 0
