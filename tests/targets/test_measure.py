"""onnxruntime measurement, ORT-to-IR mapping, comparison statistics and calibration (no timing assertions)."""

from __future__ import annotations

import math

import pytest

from segcost.targets.calibrate import (
    CalibrationSample,
    calibrated_profile_text,
    fit_profile,
    get_parameter,
)
from segcost.targets.cost_model import estimate_prepared, prepare
from segcost.targets.measure import (
    LayerGroup,
    Measurement,
    NodeTime,
    compare,
    map_to_layers,
    measure,
    named_model,
    spearman,
)
from segcost.targets.profile_toml import load_profile, parse_profile, profile_text
from tests.targets.models import conv_chain, fused


@pytest.fixture(scope="module")
def residual_graph():
    """conv → relu → conv, plus a residual Add: ORT folds the Add into the NCHWc conv."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((32, 32, 3, 3)) * 0.05).astype(np.float32), f"w{i}")
               for i in range(2)]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="conv_a", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
             helper.make_node("Conv", ["ra", "w1"], ["b"], name="conv_b", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Add", ["x", "b"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 48, 48])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 48, 48])],
                              initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return fused(model)


@pytest.fixture(scope="module")
def residual_measurement(residual_graph):
    return measure(residual_graph, runs=3, warmup=1)


def test_named_model_uses_ir_keys(residual_graph):
    names = [node.name for node in named_model(residual_graph).graph.node]
    assert names == residual_graph.topological_order()


def test_measurement_structure(residual_measurement):
    measurement = residual_measurement
    assert measurement.runs == 3 and len(measurement.wall_ms) == 3 and measurement.threads == 2
    assert measurement.node_times and all(node.median_us >= 0 for node in measurement.node_times)
    assert measurement.framework_ms >= 0
    assert measurement.robust_latency_ms == pytest.approx(measurement.kernel_ms + measurement.framework_ms)


def test_every_ir_layer_lands_in_one_group(residual_graph, residual_measurement):
    prepared = prepare(residual_graph, None)
    mapping = map_to_layers(prepared, residual_measurement)
    grouped = [name for group in mapping.groups for name in group.layers]
    assert sorted(grouped) == sorted(residual_graph.topological_order())
    by_layer = {name: group for group in mapping.groups for name in group.layers}
    assert by_layer["relu_a"] is by_layer["conv_a"]            # fused activation joins its conv
    measured = [group for group in mapping.groups if group.measured_ms is not None]
    assert {group.anchor for group in measured} >= {"conv_a"}
    total = sum(group.measured_ms for group in measured) + mapping.unmapped_ms
    assert total == pytest.approx(residual_measurement.robust_latency_ms)


def test_nchwc_names_resolve_through_output_tensors():
    prepared = prepare(fused(conv_chain()), None)
    measurement = Measurement([NodeTime("r1_nchwc", "Conv", 100.0), NodeTime("conv2", "Conv", 50.0),
                               NodeTime("ReorderOutput", "ReorderOutput", 5.0)], [1.0], 0.0, 2, 1, 0)
    mapping = map_to_layers(prepared, measurement)
    anchors = {group.anchor: group for group in mapping.groups if group.measured_ms is not None}
    assert set(anchors) == {"conv1", "conv2"}                    # r1 is relu1's output; relu1 is fused into conv1
    assert anchors["conv1"].ort_nodes == ["r1_nchwc"] and anchors["conv1"].measured_ms == pytest.approx(0.1)
    assert [node.name for node in mapping.unmapped] == ["ReorderOutput"]


def test_compare_and_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)   # average ranks for ties
    assert math.isnan(spearman([1, 2], [1, 2]))
    prepared = prepare(fused(conv_chain()), None)
    report = estimate_prepared(prepared, load_profile("cpu"))
    measurement = Measurement([], [2.0, 4.0, 3.0], 0.0, 2, 3, 0)
    groups = [LayerGroup("conv1", ["conv1", "relu1"], ["conv1"], 1.0, 1.0), LayerGroup("conv2", ["conv2"])]
    from segcost.targets.measure import LayerMapping

    comparison = compare(report, LayerMapping(groups, []), measurement)
    assert [group.name for group in comparison.groups] == ["conv1"]   # conv2 was not measured
    assert comparison.measured_latency_ms == 3.0
    assert comparison.latency_error_pct == pytest.approx(100 * (report.totals.latency_ms - 3.0) / 3.0)


def test_fit_recovers_a_known_profile_and_respects_the_peak():
    """Measurements synthesised from a known profile are fitted back; unseen kinds keep their base value."""
    import dataclasses

    base = dataclasses.replace(load_profile("cpu"), run_overhead_us=0.0)
    truth = dataclasses.replace(base, efficiency={**base.efficiency, "pointwise": 0.25, "depthwise": 0.05},
                                layer_overhead_cycles=5000.0)
    samples = []
    for size in (16, 32, 64):
        graph = fused(conv_chain(channels=32, size=size, middle="depthwise"))
        prepared = prepare(graph, None)
        report = estimate_prepared(prepared, truth)
        node_times = [NodeTime(layer.name, layer.op_type, layer.ms * 1000) for layer in report.layers if layer.ms]
        # onnxruntime's own layout conversions are kernels of their own, mapped to no layer
        node_times += [NodeTime(f"Reorder_{index}", "ReorderOutput", reorder.ms * 1000)
                       for index, reorder in enumerate(report.transfers)]
        measurement = Measurement(node_times, [report.totals.latency_ms], 0.0, 2, 1, 0)
        samples.append(CalibrationSample(f"chain{size}", prepared, map_to_layers(prepared, measurement), measurement))
    fit = fit_profile(samples, base)
    assert fit.rms_log_error < 0.05
    assert fit.parameters["efficiency.pointwise"] == pytest.approx(0.25, rel=0.1)
    assert all(0 < value <= 1 for value in fit.profile.efficiency.values())
    assert get_parameter(fit.profile, "efficiency.dense") == pytest.approx(get_parameter(base, "efficiency.dense"))
    text = calibrated_profile_text(fit, profile_text("cpu"), ["chain16", "chain32", "chain64"], 1, 2, "test")
    reloaded = parse_profile(text)
    assert reloaded.efficiency == pytest.approx(fit.profile.efficiency, rel=1e-6)
    assert "calibrated" in text and "lscpu" in text                      # fitted marked, sources of the rest kept
