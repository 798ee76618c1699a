"""optimize --int8 --mixed: layers kept in float for speed (cost model) or accuracy (leave-one-out SQNR)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import segcost
from segcost.quant.accuracy import compare_models
from segcost.quant.calibration import open_source
from segcost.quant.mixed import MixedOptions
from segcost.quant.mixed_cost import Crossing, PrecisionCosts, Unit, fastest_float_units


def _set(builder, name, change):
    init = next(init for init in builder.inits if init.name == name)
    init.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(init).copy()).astype(np.float32), name))


def _chain(qm, exp_after_c1: bool = False, seed: int = 3, channels: int = 3):
    """input 3x96x96 -> c1 3x3 -> Relu [-> Exp] -> c2 3x3 -> Relu -> c3 3x3 -> Relu -> head 1x1 (32 channels)."""
    builder = qm.Builder(seed)
    x = builder.op("Relu", [builder.conv("c1", "input", channels, 32, kernel=3)], "r1")
    if exp_after_c1:
        x = builder.op("Exp", [x], "e1")
    y = builder.op("Relu", [builder.conv("c2", x, 32, 32, kernel=3)], "r2")
    z = builder.op("Relu", [builder.conv("c3", y, 32, 32, kernel=3)], "r3")
    builder.conv("head", z, 32, 32)
    return builder


def _model(builder, channels: int = 3):
    return builder.model({"input": [1, channels, 96, 96]}, {"head": [1, 32, 96, 96]})


def _ruined_by_exp(qm):
    """Exp (not an op onnxruntime quantizes) makes channel 0 ~e^9 wide; c2 ignores that channel in float, but
    quantizing its input to one per-tensor scale zeroes the others. Only c2 in float keeps e1 in float."""
    builder = _chain(qm, exp_after_c1=True)
    _set(builder, "c1_b", lambda bias: np.where(np.arange(32) == 0, 9.0, bias))
    _set(builder, "c2_w", lambda weight: np.where(np.arange(32)[None, :, None, None] == 0, 0.0, weight))
    return _model(builder)


def _accuracy_kept(result):
    return [layer.name for layer in result.mixed.kept if layer.reason == "accuracy"]


@pytest.mark.parametrize("target", ["cpu", "tda4vm"])
def test_mixed_keeps_exactly_the_layer_int8_ruins_and_sqnr_rises(qm, target):
    result = segcost.quantize(_ruined_by_exp(qm), calib_size=8, target=target, mixed=True, min_sqnr_db=20)
    mixed = result.mixed
    assert _accuracy_kept(result) == ["c2"], mixed.kept
    assert mixed.calib_sqnr_int8_db < 5 and mixed.calib_sqnr_mixed_db >= 20 and mixed.goal_met
    assert result.accuracy.outputs[0].sqnr_db > mixed.int8_outputs[0].sqnr_db + 15   # eval data, real quantizer
    c2 = next(node for node in result.model.graph.node if node.name == "c2")
    assert c2.input[1] in {init.name for init in result.model.graph.initializer}   # float weight, no DequantizeLinear
    assert mixed.predicted_fp32_ms > mixed.predicted_mixed_ms >= mixed.predicted_int8_ms
    assert mixed.candidates_evaluated <= 12 and mixed.analysis_cpu_s > 0


def test_a_huge_range_activation_keeps_its_producer_and_reader_float(qm):
    """Between two quantized layers a tensor stays quantized unless both are float: the pair is kept.

    Per-tensor weights: with per-channel ones, cross-layer equalization (quant.equalize) rescales the
    one huge channel and int8 holds it — nothing would need float.
    """
    builder = _chain(qm)
    _set(builder, "c2_b", lambda bias: np.where(np.arange(32) == 0, 4000.0, bias))
    _set(builder, "c3_w", lambda weight: np.where(np.arange(32)[None, :, None, None] == 0, 0.0, weight))
    result = segcost.quantize(_model(builder), calib_size=8, target="tda4vm", mixed=True, per_channel=False)
    assert sorted(_accuracy_kept(result)) == ["c2", "c3"]
    assert all(layer.kept_with for layer in result.mixed.kept)
    assert result.accuracy.outputs[0].sqnr_db > 30 > 5 > result.mixed.int8_outputs[0].sqnr_db


@pytest.mark.parametrize("target", ["cpu", "tda4vm"])
def test_nothing_kept_when_int8_is_fast_and_accurate(qm, target):
    """8 input channels: a 3-channel 3x3 stem is slower in onnxruntime's int8 kernel (mixed_cost.STEM_REDUCTION)."""
    plain = segcost.quantize(_model(_chain(qm, channels=8), 8), calib_size=4, target=target)
    result = segcost.quantize(_model(_chain(qm, channels=8), 8), calib_size=4, target=target, mixed=True,
                              min_sqnr_db=25)
    assert result.mixed.kept == [] and result.mixed.goal_met and result.mixed.candidates_evaluated == 0
    assert result.mixed.predicted_mixed_ms == result.mixed.predicted_int8_ms < result.mixed.predicted_fp32_ms
    assert [node.op_type for node in result.model.graph.node] == [node.op_type for node in plain.model.graph.node]


def test_cpu_keeps_a_small_depthwise_layer_between_float_ops_for_speed(qm):
    """int8 would add a QuantizeLinear before and a DequantizeLinear after it: more than it saves."""
    builder = qm.Builder(5)
    x = builder.op("Exp", [builder.op("Relu", [builder.conv("c1", "input", 3, 32, kernel=3)], "r1")], "e1")
    weight = builder.rng.standard_normal((32, 1, 3, 3)).astype(np.float32) / 3
    builder.const("dw_w", weight)
    builder.nodes.append(helper.make_node("Conv", [x, "dw_w"], ["dw"], name="dw", group=32, pads=[1] * 4))
    builder.conv("head", builder.op("Exp", ["dw"], "e2"), 32, 32, kernel=3)
    result = segcost.quantize(_model(builder), calib_size=4, target="cpu", mixed=True, min_sqnr_db=-100)
    kept = {layer.name: layer for layer in result.mixed.kept}
    assert "dw" in kept and "head" not in kept     # the 85 MMAC head pays for its Q/DQ, the 2.7 MMAC dw does not
    assert all(layer.reason == "speed" and layer.latency_us < 0 for layer in kept.values())  # float is faster
    assert result.mixed.predicted_mixed_ms < result.mixed.predicted_int8_ms


def test_minimum_cut_is_the_cheapest_assignment():
    """Against all 2^n assignments of random costs, including shared tensors and fixed ends."""
    rng = np.random.default_rng(0)
    labels = [f"u{index}" for index in range(6)]
    for _ in range(20):
        units = {label: Unit(label, "Conv", (label,), *rng.uniform(0, 1, 2)) for label in labels}
        crossings = [Crossing(f"t{index}", rng.choice([None, "\0int8", *labels]),
                              tuple(rng.choice([None, "\0int8", *labels], size=rng.integers(1, 4))),
                              *rng.uniform(0, 1, 2)) for index in range(8)]
        costs = PrecisionCosts("cpu", units, crossings, 0.5)
        best = min(costs.latency_ms(subset) for size in range(7) for subset in itertools.combinations(labels, size))
        assert costs.latency_ms(fastest_float_units(costs)) == pytest.approx(best, abs=1e-6)
        forced = fastest_float_units(costs, ["u0"])
        assert "u0" in forced


def test_the_accuracy_report_is_of_the_mixed_model(qm):
    """The written model is the mixed one; its SQNR report is what compare_models measures on it."""
    result = segcost.quantize(_ruined_by_exp(qm), calib_size=4, target="tda4vm", mixed=True, min_sqnr_db=20)
    evaluation = open_source("synthetic", "input", (1, 3, 96, 96), 4, split="val")   # the report's default data
    again = compare_models(result.quantization.float_model, result.model, evaluation, per_layer=False)
    assert again.outputs[0].sqnr_db == pytest.approx(result.accuracy.outputs[0].sqnr_db, abs=1e-3)
    onnx.checker.check_model(result.model)
    # The edited QDQ variant the selection measured computes what the re-quantized model computes.
    calibration = compare_models(result.quantization.float_model, result.model, result.quantization.source,
                                 per_layer=False)
    assert calibration.outputs[0].sqnr_db == pytest.approx(result.mixed.calib_sqnr_mixed_db, abs=0.1)


def test_cli_mixed_report_and_bad_options(run_cli, qm, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(_ruined_by_exp(qm), path)
    output, report = tmp_path / "m.int8.onnx", tmp_path / "r.json"
    code, out, err = run_cli("optimize", str(path), "--int8", "--mixed", "--min-sqnr", "20", "--calib-size", "4",
                             "--target", "tda4vm", "-o", str(output), "--report", str(report))
    assert code == 0, err
    assert "kept in float" in out and "accuracy: +" in out and "c2" in out
    mixed = json.loads(report.read_text())["int8"]["mixed"]
    assert [layer["name"] for layer in mixed["kept"]] == ["c2"] and mixed["goal_met"]
    html = tmp_path / "r.html"
    assert run_cli("optimize", str(path), "--int8", "--mixed", "--min-sqnr", "20", "--calib-size", "2",
                   "-o", str(tmp_path / "h.onnx"), "--report", str(html))[0] == 0
    assert "Mixed precision" in html.read_text()
    for args, message in [(["--mixed"], "--mixed needs --int8"),
                          (["--int8", "--mixed", "--min-sqnr", "nan"], "--min-sqnr must be a finite"),
                          (["--int8", "--mixed", "--max-float-layers", "-1"], "--max-float-layers must be >= 0"),
                          (["--int8", "--max-float-layers", "2"], "--max-float-layers needs --mixed"),
                          (["--int8", "--mixed", "--min-sqnr", "x"], "--min-sqnr")]:
        bad = tmp_path / "bad.onnx"
        code, _, err = run_cli("optimize", str(path), *args, "-o", str(bad))
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("segcost: error:"), err
        assert message in err and not bad.exists()
    with pytest.raises(segcost.errors.InputError, match="max-float-layers"):
        segcost.quantize(str(path), mixed=True, max_float_layers=-2)


def test_help_documents_the_mixed_options(run_cli):
    code, out, _ = run_cli("optimize", "--help")
    text = " ".join(out.split())
    assert code == 0 and "--mixed" in text and "--min-sqnr DB" in text and "--max-float-layers N" in text
    defaults = MixedOptions()   # the help states the library's defaults
    assert f"[default: {defaults.min_sqnr_db:g}]" in text and f"[default: {defaults.max_float_layers}]" in text


def _int8_layers(model: onnx.ModelProto) -> set[str]:
    """Convs of a written QDQ model that compute on int8 data: they read a DequantizeLinear's output."""
    dequantized = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    return {node.name for node in model.graph.node if node.op_type == "Conv" and set(node.input) & dequantized}


@pytest.mark.parametrize(("width", "kernel", "size"), [(8, 1, 32), (32, 3, 96)])   # all float; c1 float, c2 int8
def test_a_conv_whose_clip_was_put_back_is_a_unit_and_the_report_matches_the_written_model(qm, width, kernel, size):
    """c1 → Clip(0.25, 6) → c2: segcost puts the Clip back in front of its QuantizeLinear (no zero point clips at
    0.25). c1 used to be no unit: "1 of 1 layers kept in float, mixed inf dB" while the written model ran c1 on
    int8 weights and inputs (breaker7 R10)."""
    builder = qm.Builder(seed=0)
    low, high = builder.const("lo", np.array(0.25, np.float32)), builder.const("hi", np.array(6.0, np.float32))
    clipped = builder.op("Clip", [builder.conv("c1", "input", 3, width, kernel=3), low, high], "clip")
    builder.conv("c2", clipped, width, width, kernel=kernel)
    model = builder.model({"input": [1, 3, size, size]}, {"c2": [1, width, size, size]}, opset=13)
    result = segcost.quantize(model, calib_size=4, target="cpu", mixed=True)
    full = segcost.quantize(model, calib_size=4, target="cpu")
    assert _int8_layers(full.model) == {"c1", "c2"}
    assert any(node.op_type == "Clip" for node in full.model.graph.node)   # put back
    mixed = result.mixed
    assert mixed.units == 2
    kept = {member for layer in mixed.kept for member in layer.members}
    assert "clip" in kept or "c1" not in kept   # the put-back Clip goes with its Conv
    assert _int8_layers(result.model) == {"c1", "c2"} - kept
    calibration = compare_models(result.quantization.float_model, result.model, result.quantization.source,
                                 per_layer=False)
    assert calibration.outputs[0].sqnr_db == pytest.approx(mixed.calib_sqnr_mixed_db, abs=0.1)
