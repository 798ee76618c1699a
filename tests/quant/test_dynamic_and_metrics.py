"""Dynamic batch, honest metrics, int8 footprint (issue 16, items 3 and 5)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.pipeline import optimize
from segcost.quant.accuracy import compare_models
from segcost.quant.calibration import open_source
from segcost.quant.footprint import int8_view
from segcost.quant.quantize import QuantizeOptions, quantize_graph


def _dynamic_model(qm):
    b = qm.Builder()
    x = b.conv("x", "input", 3, 8, kernel=3)
    b.op("Relu", [x], "r")
    b.conv("out", "r", 8, 4)
    graph = helper.make_graph(
        b.nodes, "dyn", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["N", 4, 32, 32])], b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("int8", [False, True])
def test_dynamic_batch_without_input_shape_keeps_the_symbol_and_runs_at_batch_3(qm, run_cli, tmp_path, int8):
    model_path, output = tmp_path / "dyn.onnx", tmp_path / "dyn.out.onnx"
    onnx.save(_dynamic_model(qm), model_path)
    args = ["optimize", str(model_path), "-o", str(output)] + (["--int8", "--calib-size", "2"] if int8 else [])
    code, out, err = run_cli(*args)
    assert code == 0, err
    written = onnx.load(output)
    assert written.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    result = ort.InferenceSession(str(output)).run(None, {"input": np.ones((3, 3, 32, 32), np.float32)})[0]
    assert result.shape == (3, 4, 32, 32)
    if int8:
        assert "pre-process" not in err and "Warning" not in err   # onnxruntime's quantizer chatter stays quiet
        assert "QuantizeLinear" in {node.op_type for node in written.graph.node}
        assert "argmax agreement" in out


def test_an_all_zero_int8_output_has_cosine_0_and_fails_any_max_drop(qm, tmp_path):
    b = qm.Builder()
    b.conv("out", "input", 3, 4)
    model = b.model({"input": [1, 3, 16, 16]}, {"out": [1, 4, 16, 16]})
    zero = onnx.ModelProto()
    zero.CopyFrom(model)
    for init in zero.graph.initializer:  # the "int8" model: same graph, all-zero weights and bias
        array = onnx.numpy_helper.to_array(init)
        init.CopyFrom(onnx.numpy_helper.from_array(np.zeros_like(array), init.name))
    source = open_source("synthetic", "input", (1, 3, 16, 16), 2)
    report = compare_models(model, zero, source, per_layer=False)
    output = report.outputs[0]
    assert output.all_zero and output.cosine_similarity == 0.0
    assert output.sqnr_db == 0.0 and output.relative_error == pytest.approx(1.0)
    assert report.drop() == 100.0
    assert any("all zeros" in note for note in report.notes)


def test_int8_footprint_counts_int8_activations_and_no_scales_as_params(qm):
    b = qm.Builder()
    x = b.conv("x", "input", 3, 8, kernel=3)
    b.op("Relu", [x], "r")
    b.conv("out", "r", 8, 4)
    graph = optimize(load_model(b.model({"input": [1, 3, 16, 16]}, {"out": [1, 4, 16, 16]}))).graph
    result = quantize_graph(graph, QuantizeOptions(calib_size=2))
    float_totals = analyze(graph).totals
    int8_totals = analyze(int8_view(graph, result.graph)).totals
    assert int8_totals.params == float_totals.params       # scales and zero points are not parameters
    assert int8_totals.macs == float_totals.macs
    weights = 8 * 3 * 9 + 4 * 8                              # int8 weights; biases int32
    assert int8_totals.weight_bytes == weights + 4 * (8 + 4)
    last = analyze(int8_view(graph, result.graph)).layers[-1]   # Conv "out": reads r (8x16x16), writes out (4x16x16)
    assert last.activation_bytes == 8 * 256 + 4 * 256              # both quantized: 1 byte per element
    assert int8_totals.activation_bytes < float_totals.activation_bytes


def test_measure_reports_predicted_and_measured_speed_and_names_slower_layers(qm, run_cli, tmp_path):
    from segcost.quant.speed import SpeedReport

    model_path = tmp_path / "m.onnx"
    onnx.save(_dynamic_model(qm), model_path)
    code, out, err = run_cli("optimize", str(model_path), "-o", str(tmp_path / "m.int8.onnx"), "--int8",
                             "--calib-size", "2", "--measure", "3")
    assert code == 0, err
    assert "predicted on cpu (cost model): fp32" in out
    assert "measured: fp32" in out and "1 thread(s), median process CPU time of 3 runs after 3 warm-up" in out
    speed = json.loads((tmp_path / "m.int8.accuracy.json").read_text())["speed"]
    assert speed["measured_ratio"] > 0 and speed["verdict_margin"] == 0.05 and "int8_faster" in speed
    slower = SpeedReport("cpu", 1.0, 0.5, [("conv", "Conv", 0.1)], measured_fp32_ms=1.0, measured_int8_ms=1.3)
    assert slower.int8_faster is False and slower.measured_ratio == pytest.approx(1.3)   # measured wins
    assert SpeedReport("tda4vm", 1.0, 0.5, profile_dtype="int8").int8_faster is True


def test_per_layer_sqnr_in_bounded_chunks_equals_all_at_once(qm, monkeypatch):
    import segcost.quant.accuracy as accuracy

    b = qm.Builder()
    x = b.conv("x", "input", 3, 8, kernel=3)
    b.op("Relu", [x], "r")
    y = b.conv("y", "r", 8, 8)
    b.op("Relu", [y], "s")
    b.conv("out", "s", 8, 4)
    graph = optimize(load_model(b.model({"input": [1, 3, 16, 16]}, {"out": [1, 4, 16, 16]}))).graph
    result = quantize_graph(graph, QuantizeOptions(calib_size=2))
    whole = compare_models(result.float_model, result.model, result.source)
    monkeypatch.setattr(accuracy, "PER_RUN_BYTES", 8 * 256 * 4)   # one 8x16x16 float tensor per run
    assert len(accuracy._chunks(accuracy._activation_pairs(result.model), accuracy._tensor_bytes(result.float_model),
                                accuracy.PER_RUN_BYTES)) >= 2
    chunked = compare_models(result.float_model, result.model, result.source)
    assert [(layer.tensor, round(layer.sqnr_db, 9)) for layer in chunked.layers] == \
        [(layer.tensor, round(layer.sqnr_db, 9)) for layer in whole.layers]
    assert chunked.outputs == whole.outputs and chunked.samples == whole.samples == 2
