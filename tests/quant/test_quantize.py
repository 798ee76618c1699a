"""int8 QDQ export: validity, exact MACs, target conventions, calibration input errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.pipeline import optimize, run_onnxruntime
from segcost.quant.accuracy import compare_models, confusion, miou_from_confusion
from segcost.quant.quantize import QuantizeOptions, quantize_graph
from segcost.samples import deeplabv3lite

SMALL = dict(width=0.35, num_classes=5, height=64, width_px=64)


@pytest.fixture(scope="module")
def fused_graph():
    return optimize(load_model(deeplabv3lite(**SMALL))).graph


def _arrays(model, suffix):
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer if init.name.endswith(suffix)}


@pytest.mark.parametrize("options", [QuantizeOptions(calib_size=3),
                                     QuantizeOptions(calib_size=3, target="tda4vm"),
                                     QuantizeOptions(calib_size=3, target="tda4vm", per_channel=False,
                                                     pow2_scales=True, method="percentile")])
def test_int8_model_is_valid_runs_and_counts_the_same_macs(fused_graph, options):
    result = quantize_graph(fused_graph, options)
    onnx.checker.check_model(result.model, full_check=True)
    assert analyze(result.graph).totals.macs == analyze(fused_graph).totals.macs
    ops = {node.op_type for node in result.model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)}
    float_out = run_onnxruntime(result.float_model, feeds)[0]
    int8_out = run_onnxruntime(result.model, feeds)[0]
    cosine = float(np.sum(float_out * int8_out) / np.linalg.norm(float_out) / np.linalg.norm(int8_out))
    assert cosine > 0.99
    zero_points = _arrays(result.model, "zero_point")
    if options.target == "tda4vm":
        assert zero_points and all(np.all(zp == 0) for zp in zero_points.values())
    if options.pow2_scales:
        for scale in _arrays(result.model, "scale").values():
            exponent = np.log2(scale.astype(np.float64))
            assert np.all(exponent == np.round(exponent))


def test_concat_inputs_share_the_output_scale(fused_graph):
    result = quantize_graph(fused_graph, QuantizeOptions(calib_size=2))
    graph = result.graph
    concats = [key for key in graph.dag if graph.node(key).op_type == "Concat"]
    assert concats
    for key in concats:
        node = graph.node(key)
        out_q = next(graph.node(user) for user in graph.consumers(node.outputs[0])
                     if graph.node(user).op_type == "QuantizeLinear")
        for tensor in node.inputs:
            dequantize = graph.node(graph.producer(tensor))
            assert dequantize.op_type == "DequantizeLinear"
            assert dequantize.inputs[1:3] == out_q.inputs[1:3]


def test_accuracy_report_ranks_layers_and_measures_outputs(fused_graph):
    result = quantize_graph(fused_graph, QuantizeOptions(calib_size=2))
    report = compare_models(result.float_model, result.model, result.source)
    assert report.samples == 2 and report.layers
    sqnr = [layer.sqnr_db for layer in report.layers]
    assert sqnr == sorted(sqnr) and all(value > 10 for value in sqnr)
    assert report.outputs[0].argmax_agreement_pct > 80
    assert report.miou_float is not None  # synthetic samples carry labels


def test_miou_is_exact():
    label = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    assert miou_from_confusion(confusion(label, label, 3)) == 100.0
    pred = np.array([[0, 1, 1, 1], [2, 2, 2, 2]])
    # class 0: 1/2, class 1: 2/3, class 2: 4/4
    assert miou_from_confusion(confusion(pred, label, 3)) == pytest.approx(100 * (0.5 + 2 / 3 + 1) / 3)


@pytest.fixture
def small_model_path(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(deeplabv3lite(**SMALL), path)
    return path


def test_cli_int8_writes_model_and_accuracy_report(run_cli, small_model_path, tmp_path):
    output = tmp_path / "m.int8.onnx"
    code, out, err = run_cli("optimize", str(small_model_path), "--int8", "--calib-size", "2", "-o", str(output),
                             "--target", "tda4vm", "--pow2-scales", "--per-tensor")
    assert code == 0, err
    onnx.checker.check_model(onnx.load(output))
    accuracy = json.loads((tmp_path / "m.int8.accuracy.json").read_text())
    assert accuracy["totals"]["macs"] == analyze(load_model(deeplabv3lite(**SMALL))).totals.macs
    assert accuracy["layers_by_sensitivity"] and "calibrating" in err
    code, _, err = run_cli("optimize", str(small_model_path), "--int8", "--calib-size", "2", "-o", str(output),
                           "--max-drop", "0")
    assert code == 1 and "exceeds --max-drop" in err, err
    again = tmp_path / "again.onnx"
    code, _, err = run_cli("optimize", str(output), "--int8", "--calib-size", "2", "-o", str(again))
    assert code == 2 and err.count("\n") == 1 and "already quantized" in err, err   # not "produced by two nodes"
    assert not again.exists()


def _one_line_2(run_cli, model_path, tmp_path, calib, match):
    code, out, err = run_cli("optimize", str(model_path), "--int8", "--calib", str(calib),
                             "-o", str(tmp_path / "out.onnx"))
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and match in err, err
    assert not (tmp_path / "out.onnx").exists()


def test_bad_calibration_inputs_exit_2(run_cli, small_model_path, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_2(run_cli, small_model_path, tmp_path, empty, "is empty")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    _one_line_2(run_cli, small_model_path, tmp_path, junk, "no images")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 32, 32), np.float32))
    _one_line_2(run_cli, small_model_path, tmp_path, wrong, "does not fit the model input")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "a.ppm").write_bytes(b"P6\n64 64\n255\n\x00\x01")
    _one_line_2(run_cli, small_model_path, tmp_path, fake, "truncated")
    _one_line_2(run_cli, small_model_path, tmp_path, tmp_path / "missing", "no such file")


def test_image_folder_calibration(run_cli, small_model_path, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
        (images / f"{index}.ppm").write_bytes(b"P6\n50 40\n255\n" + pixels.tobytes())
    code, out, err = run_cli("optimize", str(small_model_path), "--int8", "--calib", str(images),
                             "-o", str(tmp_path / "out.onnx"))
    assert code == 0, err
    assert "2 files from" in out


def test_cpu_target_keeps_the_output_upsample_in_float(fused_graph):
    from segcost.quant.quantize import float_output_tail

    tail = float_output_tail(fused_graph)
    assert [fused_graph.node(fused_graph.producer(fused_graph.outputs[0])).op_type] == ["Resize"]
    assert tail == [fused_graph.node(fused_graph.producer(fused_graph.outputs[0])).name]
    cpu = quantize_graph(fused_graph, QuantizeOptions(calib_size=2)).model
    producers = {output: node for node in cpu.graph.node for output in node.output}
    final = producers[cpu.graph.output[0].name]
    assert final.op_type == "Resize"  # float upsample, no Q/DQ pair at full resolution
    assert producers[final.input[0]].op_type == "DequantizeLinear"
    tda4vm = quantize_graph(fused_graph, QuantizeOptions(calib_size=2, target="tda4vm")).model
    producers = {output: node for node in tda4vm.graph.node for output in node.output}
    assert producers[tda4vm.graph.output[0].name].op_type == "DequantizeLinear"  # the accelerator runs it in int8


def test_output_tail_of_unnamed_nodes_stays_float():
    from onnx import TensorProto, helper

    from segcost.quant.quantize import float_output_tail

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype(np.float32), "w")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("Resize", ["c", "", "scales"], ["y"],
                                                                          mode="linear")],
        "unnamed", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])], [weight, scales])
    ir = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    tail = float_output_tail(ir)
    assert len(tail) == 1 and tail[0]                                  # a name the exported node carries
    model = quantize_graph(ir, QuantizeOptions(calib_size=2)).model
    producers = {output: node for node in model.graph.node for output in node.output}
    assert producers[model.graph.output[0].name].op_type == "Resize"


def test_no_miou_when_the_output_is_smaller_than_the_labels(run_cli, tmp_path):
    from onnx import TensorProto, helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((5, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["y"], name="conv", strides=[4, 4], pads=[1, 1, 1, 1],
                          kernel_shape=[3, 3])], "stride4",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 16, 16])], [weight])
    path = tmp_path / "stride4.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    code, out, err = run_cli("optimize", str(path), "--int8", "--calib-size", "2", "-o", str(tmp_path / "q.onnx"))
    assert code == 0, err
    assert "no mIoU: the labels are 64x64 but the output 'y' is 16x16" in out
    report = json.loads((tmp_path / "q.accuracy.json").read_text())
    assert report["miou_drop"] is None and report["accuracy_notes"]
