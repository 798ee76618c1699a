"""Per-channel edge cases, quantizer failures, options (issue 16, items 2 and 5)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from segcost.errors import InputError, SegcostError
from segcost.frontends.onnx import load_model
from segcost.pipeline import run_onnxruntime
from segcost.quant.quantize import QuantizeOptions, quantize_graph

FEEDS = {"input": np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)}


def _check_runs(result, qm, minimum=0.99):
    onnx.checker.check_model(result.model, full_check=True)
    want, got = run_onnxruntime(result.float_model, FEEDS)[0], run_onnxruntime(result.model, FEEDS)[0]
    assert qm.cosine(want, got) > minimum
    return result


def _dequantizer_of(model, tensor):
    return next(node for node in model.graph.node if node.op_type == "DequantizeLinear" and node.output[0] == tensor)


def _init(model, name):
    return next(numpy_helper.to_array(init) for init in model.graph.initializer if init.name == name)


def test_grouped_conv_transpose_gets_per_channel_weights_and_c_out_bias_scales(qm):
    b = qm.Builder()
    x = b.conv("x", "input", 3, 8)
    b.const("up_w", (0.3 * np.random.default_rng(0).standard_normal((8, 2, 2, 2))).astype(np.float32))
    b.const("up_b", np.array([0.1, -0.2, 0.3, 0.05], np.float32))   # C_out = group · 2 = 4
    b.nodes.append(helper.make_node("ConvTranspose", [x, "up_w", "up_b"], ["up"], name="up", group=2, strides=[2, 2]))
    b.conv("out", "up", 4, 2)
    model = b.model({"input": [1, 3, 16, 16]}, {"out": [1, 2, 32, 32]})
    result = _check_runs(quantize_graph(load_model(model), QuantizeOptions(calib_size=2)), qm)
    up = next(node for node in result.model.graph.node if node.op_type == "ConvTranspose")
    weight_dq = _dequantizer_of(result.model, up.input[1])
    assert _init(result.model, weight_dq.input[1]).shape == (2,)        # along axis 1: C_out/group
    assert next(attr.i for attr in weight_dq.attribute if attr.name == "axis") == 1
    bias_dq = _dequantizer_of(result.model, up.input[2])
    bias_scale = _init(result.model, bias_dq.input[1])
    assert bias_scale.shape == (4,)
    x_scale = _init(result.model, _dequantizer_of(result.model, up.input[0]).input[1])
    w_scale = _init(result.model, weight_dq.input[1])
    np.testing.assert_allclose(bias_scale, x_scale * np.tile(w_scale, 2), rtol=1e-6)


def test_opset_12_model_is_upgraded_before_per_channel_dequantize(qm):
    b = qm.Builder()
    x = b.conv("x", "input", 3, 8, kernel=3)
    b.op("Relu", [x], "r")
    b.conv("out", "r", 8, 2)
    model = b.model({"input": [1, 3, 16, 16]}, {"out": [1, 2, 16, 16]}, opset=12)
    result = _check_runs(quantize_graph(load_model(model), QuantizeOptions(calib_size=2)), qm)
    assert any("opset 12 upgraded to 13" in note for note in result.notes)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_per_channel_axis_follows_trans_b(qm, trans_b):
    b = qm.Builder()
    b.op("GlobalAveragePool", ["input"], "pooled")
    b.op("Flatten", ["pooled"], "flat")
    weight = np.random.default_rng(0).standard_normal((5, 3) if trans_b else (3, 5)).astype(np.float32)
    b.const("fc_w", weight)
    b.const("fc_b", np.zeros(5, np.float32))
    b.nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["out"], name="fc", transB=trans_b))
    model = b.model({"input": [1, 3, 16, 16]}, {"out": [1, 5]})
    result = quantize_graph(load_model(model), QuantizeOptions(calib_size=2))
    onnx.checker.check_model(result.model, full_check=True)
    gemm = next(node for node in result.model.graph.node if node.op_type == "Gemm")
    weight_dq = _dequantizer_of(result.model, gemm.input[1])
    assert _init(result.model, weight_dq.input[1]).shape == (5,)
    assert next(attr.i for attr in weight_dq.attribute if attr.name == "axis") == (0 if trans_b else 1)


def test_a_model_onnxruntime_cannot_run_names_the_layer_and_no_false_workaround(qm):
    """A float64 weight: onnxruntime refuses the float model itself, which no quantizer option changes (breaker6
    R4: the message used to suggest --exclude-nodes/--per-tensor, which cannot help)."""
    b = qm.Builder()
    b.conv("x", "input", 3, 4)
    b.inits[0] = numpy_helper.from_array(numpy_helper.to_array(b.inits[0]).astype(np.float64), "x_w")
    model = helper.make_model(helper.make_graph(
        b.nodes, "t", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 16, 16])], b.inits),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(SegcostError) as raised:
        quantize_graph(load_model(model), QuantizeOptions(calib_size=2))
    assert "'x'" in str(raised.value) and "workaround" not in str(raised.value)
    assert "could not run the model on the calibration data" in str(raised.value)


def test_a_quantizer_failure_offers_only_workarounds_that_change_it(qm):
    from segcost.quant.quantize import _failure_message

    graph = load_model(_conv_model(qm))
    error = ValueError("weight of node x has no range")
    assert _failure_message(error, str(error), graph, QuantizeOptions()).endswith(
        "workaround: --exclude-nodes x or --per-tensor")
    assert _failure_message(error, str(error), graph, QuantizeOptions(per_channel=False)).endswith(
        "workaround: --exclude-nodes x")
    anonymous = ValueError("no range")
    assert "workaround" not in _failure_message(anonymous, "no range", graph, QuantizeOptions(per_channel=False))


def _conv_model(qm) -> onnx.ModelProto:
    b = qm.Builder()
    b.conv("x", "input", 3, 4)
    return b.model({"input": [1, 3, 16, 16]}, {"x": [1, 4, 16, 16]})


def test_unknown_exclude_nodes_is_an_error(qm):
    b = qm.Builder()
    b.conv("out", "input", 3, 2)
    model = b.model({"input": [1, 3, 16, 16]}, {"out": [1, 2, 16, 16]})
    with pytest.raises(InputError, match="no node named 'nope'"):
        quantize_graph(load_model(model), QuantizeOptions(calib_size=2, exclude_nodes=("out", "nope")))


def test_npz_header_claiming_a_huge_array_is_rejected_before_reading(qm, tmp_path):
    import zipfile

    from numpy.lib import format as npy_format

    header = tmp_path / "x.npy"
    with open(header, "wb") as stream:   # a header for 10^9 samples, then 64 bytes of data
        npy_format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (10**9, 3, 16, 16)})
        stream.write(b"\0" * 64)
    with zipfile.ZipFile(tmp_path / "calib.npz", "w") as archive:
        archive.write(header, "input.npy")
    b = qm.Builder()
    b.conv("out", "input", 3, 2)
    model = b.model({"input": [1, 3, 16, 16]}, {"out": [1, 2, 16, 16]})
    for spec in (tmp_path / "calib.npz", header):
        with pytest.raises(InputError, match="header claims"):
            quantize_graph(load_model(model), QuantizeOptions(calibration=str(spec), calib_size=2))


def test_only_calib_size_samples_are_read(qm, tmp_path):
    data = np.random.default_rng(0).standard_normal((50, 3, 16, 16)).astype(np.float32)
    np.savez_compressed(tmp_path / "calib.npz", input=data)
    from segcost.quant.calibration import open_source

    source = open_source(str(tmp_path / "calib.npz"), "input", (1, 3, 16, 16), size=3)
    samples = [sample.feeds["input"] for sample in source]
    assert len(samples) == 3 and np.array_equal(samples[2][0], data[2])


def test_an_all_zero_concat_input_does_not_force_float(qm, tmp_path):
    """smp inserts a zero feature map (ConstantOfShape) into a decoder Concat: zeros are exact at any
    scale, so the Concat stays int8 (was: 'kept in float ... spans 1/inf of the Concat's range')."""
    import numpy as np

    from segcost.frontends.onnx import load_model
    from segcost.quant.quantize import QuantizeOptions, quantize_graph

    b = qm.Builder(seed=2)
    b.conv("a", "input", 3, 4)
    b.op("Relu", ["a"], "r")
    b.const("zero", np.zeros(1, np.float32))
    b.op("Mul", ["r", "zero"], "z")
    b.op("Concat", ["r", "z"], "cat", axis=1)
    b.conv("out", "cat", 8, 4)
    model = b.model({"input": [1, 3, 16, 16]}, {"out": [1, 4, 16, 16]})
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal([4, 3, 16, 16]).astype(np.float32))
    result = quantize_graph(load_model(model), QuantizeOptions(calibration=str(tmp_path / "calib.npy"), calib_size=4))
    assert not any("kept in float" in note for note in result.notes), result.notes
    assert {node.op_type for node in result.model.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    kept_float = [node.name for node in result.model.graph.node if node.op_type == "Conv" and node.name == "out"
                  and not any(name.endswith("DequantizeLinear_Output") for name in node.input[:2])]
    assert not kept_float
