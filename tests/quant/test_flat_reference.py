"""A float output with no signal on the data (constant to int8 precision) is named as the cause of an SQNR failure.

rapidocr's PP-OCRv4 text detector on synthetic shapes: the float probability map is ~1e-6 on most samples
(no text), below one int8 step (1/255) of the output, and the int8 output is 0 there; the failure said only
"SQNR 5.8 dB" or "all zeros", not that the data does not exercise the model. The failure stays a failure.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segcost.quant.accuracy import MIN_OUTPUT_SQNR_DB, compare_models
from segcost.quant.calibration import open_source

SHAPE = (1, 1, 8, 8)
STEP = 1 / 255


def _model(bias: float, quantized: bool) -> onnx.ModelProto:
    """y = Sigmoid(20·x + bias); `quantized`: y through QuantizeLinear/DequantizeLinear (uint8, scale 1/255)."""
    inits = [numpy_helper.from_array(np.full((1, 1, 1, 1), 20.0, np.float32), "w"),
             numpy_helper.from_array(np.array([bias], np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["p" if quantized else "y"])]
    if quantized:
        inits += [numpy_helper.from_array(np.array(STEP, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.uint8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["p", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _source(tmp_path, flat: int, busy: int):
    """`flat` samples with x in [0, 0.05] (logit −14..−13: y ~1e-6), then `busy` with x in [0, 1.4] (y in 0..1)."""
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.uniform(0, 0.05, (flat, *SHAPE[1:])), rng.uniform(0, 1.4, (busy, *SHAPE[1:]))])
    np.save(tmp_path / "data.npy", data.astype(np.float32))
    return open_source(str(tmp_path / "data.npy"), "x", SHAPE, flat + busy)


def test_int8_all_zeros_on_a_flat_reference_says_the_data_does_not_exercise_the_model(tmp_path):
    report = compare_models(_model(-14.0, False), _model(-14.0, True), _source(tmp_path, 6, 0), per_layer=False)
    output = report.outputs[0]
    assert output.all_zero and report.drop() == 100.0       # still a failure: exit 1 in the CLI
    assert output.flat_samples == 6 and output.int8_step == np.float32(STEP)
    [failure] = report.failures()
    assert failure.startswith("int8 output 'y' is all zeros (the float one is not)")
    assert "spans less than one int8 step (0.00392) on every sample: the data does not exercise the model" in failure
    assert "--calib DIR" in failure


def test_an_sqnr_failure_on_mostly_flat_samples_names_them(tmp_path):
    # the int8 model computes another bias: wrong on the busy samples, the failure is real
    report = compare_models(_model(-14.0, False), _model(-8.0, True), _source(tmp_path, 6, 2), per_layer=False)
    output = report.outputs[0]
    assert output.flat_samples == 6 and output.sqnr_db < MIN_OUTPUT_SQNR_DB
    [failure] = report.failures()
    assert "SQNR" in failure and "on 6 of 8 samples: the data does not exercise the model" in failure


def test_an_sqnr_failure_on_busy_samples_has_no_such_excuse(tmp_path):
    report = compare_models(_model(-14.0, False), _model(-8.0, True), _source(tmp_path, 2, 6), per_layer=False)
    assert report.outputs[0].flat_samples == 2
    [failure] = report.failures()
    assert "SQNR" in failure and "exercise" not in failure


def test_an_exact_match_of_a_constant_output_is_not_reported_as_good(tmp_path):
    # Sigmoid(−200) is exactly 0 in float32: float and int8 agree exactly (SQNR +inf), which measures nothing
    report = compare_models(_model(-200.0, False), _model(-200.0, True), _source(tmp_path, 3, 1), per_layer=False)
    assert report.outputs[0].flat_samples == 4 and report.failures() == []
    assert any("constant to int8 precision on every sample" in note for note in report.notes)
