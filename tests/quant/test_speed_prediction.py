"""The int8 speed prediction: one per-precision model with --mixed (issue 16 item 6), one copy of the int8 graph."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import helper

import segcost
import segcost.frontends.onnx as onnx_frontend
from segcost.pipeline import optimize, static_view
from segcost.quant.mixed_cost import precision_costs
from segcost.quant.quantize import QuantizeOptions, quantize_graph
from segcost.quant.speed import VERDICT_MARGIN, SpeedReport, predict
from segcost.reports.passes import render_speed


def _model(qm, batch):
    b = qm.Builder()
    x = b.conv("x", "input", 3, 8, kernel=3)
    b.op("Relu", [x], "r")
    b.conv("out", "r", 8, 4)
    graph = helper.make_graph(
        b.nodes, "m", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [batch, 4, 16, 16])], b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("batch", ["N", 1])
def test_prediction_loads_the_int8_graph_once(qm, monkeypatch, batch):
    float_graph = optimize(onnx_frontend.load_model(_model(qm, batch))).graph
    int8_graph = quantize_graph(float_graph, QuantizeOptions(calib_size=2)).graph
    static_float, static_int8 = static_view(float_graph), static_view(int8_graph)
    loads = []
    real_load = onnx_frontend.load_model
    monkeypatch.setattr(onnx_frontend, "load_model",
                        lambda *args, **kwargs: loads.append(1) or real_load(*args, **kwargs))
    report = predict(float_graph, static_float, static_int8, "cpu")
    assert len(loads) == 1
    assert report.predicted_fp32_ms > 0 and report.predicted_int8_ms > 0
    ops = {int8_graph.node(key).op_type for key in int8_graph.topological_order()}
    assert "DequantizeLinear" in ops   # the caller's graphs are intact
    assert "DequantizeLinear" in {static_int8.node(key).op_type for key in static_int8.topological_order()}


def test_default_model_is_predicted_faster_in_int8_on_cpu():
    """onnxruntime measures int8/fp32 ~0.5 here; the float cost model of the QDQ graph said 2.02 (slower)."""
    result = segcost.quantize(calib_size=2, target="cpu")
    assert result.speed.predicted_ratio < 1 - VERDICT_MARGIN and result.speed.int8_faster is True
    assert "measured" in result.speed.assumption and "not calibrated" not in result.speed.assumption


@pytest.mark.parametrize(("predicted", "measured", "verdict"), [
    (1.0, None, None), (1.04, None, None), (0.96, None, None),       # within the margin: no verdict
    (1.06, None, False), (0.94, None, True),
    (0.5, 1.0, None), (0.5, 1.2, False), (1.5, 0.7, True),           # measured overrides predicted
])
def test_verdict_needs_a_difference_beyond_the_margin(predicted, measured, verdict):
    report = SpeedReport("cpu", 1.0, predicted, measured_fp32_ms=None if measured is None else 1.0,
                         measured_int8_ms=measured)
    assert report.int8_faster is verdict


def _speed_lines(speed) -> list[str]:
    return [line for line in render_speed(speed) if "faster" in line or "verdict" in line]


def test_not_faster_is_said_only_beyond_the_margin_and_with_its_layers_or_why_none():
    assert not any("NOT faster" in line for line in _speed_lines(SpeedReport("tda4vm", 1.0, 1.001)))
    lines = _speed_lines(SpeedReport("cpu", 1.0, 1.3, [("dw", "Conv", 0.2)]))
    assert any("NOT faster" in line and "dw (Conv, +0.2 ms)" in line for line in lines)
    lines = _speed_lines(SpeedReport("cpu", 1.0, 0.5, [], measured_fp32_ms=1.0, measured_int8_ms=1.3))
    assert any("NOT faster" in line and "names no layer" in line for line in lines)


def _dw_between_float_ops(qm):
    """8 input channels: a 3-channel 3x3 stem would be slower in int8 too (mixed_cost.STEM_REDUCTION)."""
    builder = qm.Builder(5)
    x = builder.op("Sin", [builder.op("Relu", [builder.conv("c1", "input", 8, 32, kernel=3)], "r1")], "e1")
    builder.const("dw_w", builder.rng.standard_normal((32, 1, 3, 3)).astype(np.float32) / 3)
    builder.nodes.append(helper.make_node("Conv", [x, "dw_w"], ["dw"], name="dw", group=32, pads=[1] * 4))
    builder.conv("head", builder.op("Sin", ["dw"], "e2"), 32, 32, kernel=3)
    return builder.model({"input": [1, 8, 96, 96]}, {"head": [1, 32, 96, 96]})


@pytest.mark.parametrize("target", ["cpu", "tda4vm"])
def test_mixed_and_the_speed_report_are_one_model(qm, target):
    """--mixed's full-int8 latency is the report's int8 latency without --mixed; with it, the report costs the
    written (mixed) model; the layers the report blames are the ones --mixed keeps for speed."""
    plain = segcost.quantize(_dw_between_float_ops(qm), calib_size=4, target=target)
    mixed = segcost.quantize(_dw_between_float_ops(qm), calib_size=4, target=target, mixed=True, min_sqnr_db=-100)
    assert plain.speed.predicted_int8_ms == pytest.approx(mixed.mixed.predicted_int8_ms, rel=1e-12)
    assert plain.speed.predicted_fp32_ms == pytest.approx(mixed.mixed.predicted_fp32_ms, rel=1e-12)
    assert mixed.speed.predicted_int8_ms == pytest.approx(mixed.mixed.predicted_mixed_ms, rel=1e-12)
    kept_for_speed = {layer.name for layer in mixed.mixed.kept if layer.reason == "speed"}
    assert {name for name, _, _ in plain.speed.slower_layers} >= kept_for_speed
    if target == "cpu":
        assert "dw" in kept_for_speed and plain.speed.slower_layers[0][0] == "dw"


def _costs(qm, model):
    float_graph = optimize(onnx_frontend.load_model(model)).graph
    int8_graph = quantize_graph(float_graph, QuantizeOptions(calib_size=2)).graph
    return precision_costs(float_graph, static_view(float_graph), static_view(int8_graph), "cpu")


def test_a_float_resize_after_int8_layers_loses_the_blocked_layout(qm):
    """The output tail's bilinear Resize reads a DequantizeLinear and writes the float output: onnxruntime runs it
    in float, and off its NCHWc path once the conv before it is int8 (measured 4x slower: int8_layer_rates.py)."""
    builder = qm.Builder(1)
    builder.conv("head", builder.op("Relu", [builder.conv("c1", "input", 16, 32, kernel=3)], "r1"), 32, 21)
    builder.const("scales", np.array([1, 1, 4, 4], np.float32))
    builder.nodes.append(helper.make_node("Resize", ["head", "", "scales"], ["up"], name="up", mode="linear"))
    costs = _costs(qm, builder.model({"input": [1, 16, 64, 64]}, {"up": [1, 21, 256, 256]}))
    assert set(costs.units) == {"c1", "head"}          # the Resize is no unit: nothing makes it int8
    layout = [crossing for crossing in costs.crossings if crossing.tensor == "up (layout)"]
    assert len(layout) == 1 and layout[0].producer is None and layout[0].consumers == ("head",)
    assert layout[0].quantize_ms > 0                   # paid when head is int8


def test_int8_rates_differ_by_conv_kind_on_cpu(qm):
    """A 3-channel 3x3 stem runs slower in onnxruntime's int8 kernel than in its float one, a pointwise conv about
    3x faster, a depthwise conv gains far less (benchmarks/int8_layer_rates.py, 7 models: 0.64-1.4)."""
    builder = qm.Builder(2)
    x = builder.op("Relu", [builder.conv("stem", "input", 3, 32, kernel=3)], "r1")
    builder.const("dw_w", (builder.rng.standard_normal((32, 1, 3, 3)) / 3).astype(np.float32))
    builder.nodes.append(helper.make_node("Conv", [x, "dw_w"], ["dw"], name="dw", group=32, pads=[1] * 4))
    builder.conv("pw", builder.op("Relu", ["dw"], "r2"), 32, 64)
    costs = _costs(qm, builder.model({"input": [1, 3, 128, 128]}, {"pw": [1, 64, 128, 128]}))
    assert costs.units["stem"].int8_ms > costs.units["stem"].fp32_ms
    ratio = {label: unit.int8_ms / unit.fp32_ms for label, unit in costs.units.items()}
    assert ratio["stem"] > 1 and ratio["pw"] < 0.5 and ratio["dw"] > 2 * ratio["pw"]


def test_a_resize_kept_float_after_an_int8_conv_runs_off_the_blocked_layout(qm):
    """--mixed: a float decoder Resize reading an int8 conv runs onnxruntime's plain kernel (measured 4.8 ms against
    1.1 ms blocked on the default model) and its float reader needs a reorder: paid only in that assignment."""
    builder = qm.Builder(3)
    x = builder.op("Relu", [builder.conv("c1", "input", 16, 64, kernel=3)], "r1")
    builder.const("scales", np.array([1, 1, 2, 2], np.float32))
    builder.nodes.append(helper.make_node("Resize", [x, "", "scales"], ["up"], name="up", mode="linear"))
    builder.conv("c2", "up", 64, 32, kernel=3)
    costs = _costs(qm, builder.model({"input": [1, 16, 64, 64]}, {"c2": [1, 32, 128, 128]}))
    assert set(costs.units) == {"c1", "up", "c2"}
    layout = [crossing for crossing in costs.crossings if crossing.tensor.startswith("up (layout")]
    assert [(crossing.producer, crossing.consumers) for crossing in layout] == [("c1", ("up",))]
    assert layout[0].dequantize_ms > 0 and layout[0].quantize_ms == 0
    without = replace(costs, crossings=[crossing for crossing in costs.crossings if crossing not in layout])
    assert costs.latency_ms({"up"}) - without.latency_ms({"up"}) == pytest.approx(layout[0].dequantize_ms)
    assert costs.latency_ms({"c1", "up"}) == pytest.approx(without.latency_ms({"c1", "up"}))   # c1 float: blocked
