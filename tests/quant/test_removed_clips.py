"""A Relu/Clip the quantizer removes keeps clipping through Concat scale sharing (issue 16, breaker 2).

onnxruntime's quantizer (asymmetric activations, `--target cpu`) drops a Relu after a
quantized layer and lets zero point 0 clip; sharing a signed Concat scale with that tensor
used to pass the negatives (SQNR 2.4 dB on Relu → Concat, 0.0 dB on Concat → Relu).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from segcost.frontends.onnx import load_model
from segcost.passes import qdq_clips, qdq_share
from segcost.passes._infra import PassResult
from segcost.passes.qdq_share import concat_scale_mismatches
from segcost.pipeline import run_onnxruntime
from segcost.quant.quantize import QuantizeOptions, quantize_graph

SHAPE = [1, 3, 16, 16]


def _sqnr(want: np.ndarray, got: np.ndarray) -> float:
    want, got = want.astype(np.float64), got.astype(np.float64)
    return float(10 * np.log10(np.sum(want ** 2) / np.sum((want - got) ** 2)))


def _model(qm, case: str) -> onnx.ModelProto:
    """Two signed convs; the activation sits before one Concat input, or after the Concat."""
    b = qm.Builder()
    a = b.conv("a", "input", 3, 8, gain=2.0)
    c = b.conv("c", "input", 3, 8, gain=2.0)
    if case == "relu_concat":
        a = b.op("Relu", [a], "a_relu")
    elif case == "relu6_concat":
        b.const("zero", np.array(0.0, np.float32))
        b.const("six", np.array(6.0, np.float32))
        a = b.op("Clip", [a, "zero", "six"], "a_relu6")
    concat = b.op("Concat", [a, c], "cat", axis=1)
    if case == "concat_relu":
        concat = b.op("Relu", [concat], "cat_relu")
    b.conv("out", concat, 16, 4)
    return b.model({"input": SHAPE}, {"out": [1, 4, 16, 16]})


def _quantize(model, tmp_path, **options):
    data = np.random.default_rng(1).standard_normal([8, *SHAPE[1:]]).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    result = quantize_graph(load_model(model),
                            QuantizeOptions(calibration=str(tmp_path / "calib.npy"), calib_size=8, **options))
    feeds = {"input": data[:1]}
    return result, run_onnxruntime(result.float_model, feeds)[0], run_onnxruntime(result.model, feeds)[0]


@pytest.mark.parametrize("case", ["relu_concat", "concat_relu", "relu6_concat"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_a_removed_activation_still_clips_after_concat_scale_sharing(qm, tmp_path, case, per_channel):
    result, want, got = _quantize(_model(qm, case), tmp_path, per_channel=per_channel)
    assert "Relu" not in {node.op_type for node in result.model.graph.node}  # the quantizer did remove it
    assert result.problems == []
    assert concat_scale_mismatches(result.graph) == []
    assert _sqnr(want, got) > 25  # 2.4 dB (0.0 dB for Concat → Relu) before the fix


def _without_clip_repairs(monkeypatch) -> None:
    """The old behaviour: Concat sharing ignores removed clips, and nothing puts the activation back."""
    original = qdq_share.ShareConcatScalesPass.__init__
    monkeypatch.setattr(qdq_share.ShareConcatScalesPass, "__init__", lambda self, clips=None: original(self))
    monkeypatch.setattr(qdq_clips.RestoreClipsPass, "call", lambda self, graph: PassResult(graph, False, []))


def test_power_of_two_scales_put_back_a_relu6_they_would_unclip(qm, tmp_path):
    """No power-of-two scale represents [0, 6] (2^-5 gives [0, 7.97]): the Clip goes back before its Q."""
    b = qm.Builder()
    b.const("zero", np.array(0.0, np.float32))
    b.const("six", np.array(6.0, np.float32))
    b.op("Clip", [b.conv("a", "input", 3, 8, gain=16.0), "zero", "six"], "a_relu6")
    b.conv("out", "a_relu6", 8, 4)
    model = b.model({"input": SHAPE}, {"out": [1, 4, 16, 16]})
    result, want, got = _quantize(model, tmp_path, pow2_scales=True)
    assert result.problems == []
    assert "Clip" in {node.op_type for node in result.model.graph.node}
    assert any(note.startswith("restored 1 activations") for note in result.notes)
    assert _sqnr(want, got) > 25


def test_the_self_check_names_a_removed_relu_that_no_longer_clips(qm, tmp_path, monkeypatch):
    """With the clip constraint switched off, sharing breaks the clip and the check must say so."""
    _without_clip_repairs(monkeypatch)
    result, want, got = _quantize(_model(qm, "relu_concat"), tmp_path)
    assert _sqnr(want, got) < 15
    assert any(problem.startswith("Relu a_relu was folded into the quantization of 'a_relu'")
               for problem in result.problems), result.problems


def test_cli_leads_with_the_failure_and_exits_1_on_a_low_sqnr_output(qm, run_cli, tmp_path, monkeypatch):
    _without_clip_repairs(monkeypatch)
    onnx.save_model(_model(qm, "concat_relu"), tmp_path / "m.onnx")
    output = tmp_path / "m8.onnx"
    code, out, err = run_cli("optimize", str(tmp_path / "m.onnx"), "--int8", "--calib-size", "2", "-o", str(output),
                             "--report", str(tmp_path / "report.html"))
    assert code == 1, err
    lines = out.splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("int8: calibrated"))
    assert lines[header - 1].startswith("warning: int8 "), out  # the int8 report leads with it
    assert "segcost: int8" in err and "cat_relu" in err
    assert output.exists()  # written all the same
    failures = json.loads((tmp_path / "m8.accuracy.json").read_text())["failures"]
    assert any("SQNR" in failure for failure in failures)
    assert "warning: int8 self-check failed: Relu cat_relu" in (tmp_path / "report.html").read_text()


def _clip_model(qm, lo: float, hi: float, at_output: bool) -> onnx.ModelProto:
    """Conv → Clip(lo, hi), the Clip's output a graph output or read by another Conv."""
    b = qm.Builder()
    b.const("lo", np.array(lo, np.float32))
    b.const("hi", np.array(hi, np.float32))
    b.op("Clip", [b.conv("a", "input", 3, 8, gain=2.0), "lo", "hi"], "clip")
    if at_output:
        return b.model({"input": SHAPE}, {"clip": [1, 8, 16, 16]})
    b.conv("out", "clip", 8, 4)
    return b.model({"input": SHAPE}, {"out": [1, 4, 16, 16]})


@pytest.mark.parametrize("at_output", [True, False])
@pytest.mark.parametrize(("lo", "hi"), [(0.25, 6.0), (-6.0, -0.25)])
def test_a_clip_whose_bounds_exclude_zero_stays_in_the_int8_model(qm, tmp_path, lo, hi, at_output):
    """breaker6 R1: a QuantizeLinear's range always includes 0, so it cannot carry a floor above 0 (or a ceiling
    below 0); the Clip the quantizer removed must come back, also when its output is a graph output (the quantizer
    renames the Conv's result to `clip_QuantizeLinear_Input` there, which the check used to miss: 40% of outputs
    below a 0.25 floor, no warning)."""
    model = _clip_model(qm, lo, hi, at_output)
    data = np.random.default_rng(1).standard_normal([8, *SHAPE[1:]]).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    result = quantize_graph(load_model(model), QuantizeOptions(calibration=str(tmp_path / "calib.npy"), calib_size=8))
    assert result.problems == []
    assert "Clip" in {node.op_type for node in result.model.graph.node}
    feeds = {"input": data[:1]}
    got = run_onnxruntime(result.model, feeds)[0]
    clipped = got if at_output else run_onnxruntime(_with_output(result.model, "clip"), feeds)[-1]
    step = (hi - lo) / 255
    assert clipped.min() >= lo - step and clipped.max() <= hi + step


def _with_output(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    return copy


def test_a_removed_activation_segcost_cannot_locate_is_a_failure(qm, tmp_path, monkeypatch):
    """Not finding the QuantizeLinear that carries a removed Clip must not mean "nothing to check"."""
    monkeypatch.setattr(qdq_clips, "_carrier", lambda graph, tensor: None)
    model = _clip_model(qm, 0.25, 6.0, at_output=True)
    data = np.random.default_rng(1).standard_normal([4, *SHAPE[1:]]).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    result = quantize_graph(load_model(model), QuantizeOptions(calibration=str(tmp_path / "calib.npy"), calib_size=4))
    assert any(problem.startswith("Clip clip was removed by onnxruntime's quantizer") for problem in result.problems)


def test_every_activation_onnxruntime_may_remove_is_tracked():
    """CLIP_OPS must cover the installed onnxruntime's QDQ removable activations."""
    from onnxruntime.quantization.operators.activation import QDQRemovableActivation
    from onnxruntime.quantization.registry import QDQRegistry

    removable = {op for op, handler in QDQRegistry.items() if handler is QDQRemovableActivation}
    assert removable and removable <= set(qdq_clips.CLIP_OPS)


def test_the_float_variant_of_a_removed_relu_at_a_graph_output_still_clips(qm, tmp_path):
    """--mixed's float variant puts a removed activation back where its QuantizeLinear goes; at a graph output the
    carrier is `<output>_QuantizeLinear_Input`, which it used to miss (Conv without its Relu)."""
    from segcost.quant.mixed_variants import float_variant

    b = qm.Builder()
    b.op("Relu", [b.conv("a", "input", 3, 8, gain=2.0)], "relu")
    model = b.model({"input": SHAPE}, {"relu": [1, 8, 16, 16]})
    data = np.random.default_rng(1).standard_normal([4, *SHAPE[1:]]).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    result = quantize_graph(load_model(model), QuantizeOptions(calibration=str(tmp_path / "calib.npy"), calib_size=4))
    assert "Relu" not in {node.op_type for node in result.model.graph.node}
    variant = float_variant(result.model, result.float_model, live=set())
    feeds = {"input": data[:1]}
    np.testing.assert_allclose(run_onnxruntime(variant, feeds)[0], run_onnxruntime(result.float_model, feeds)[0],
                               atol=1e-5)


@pytest.mark.parametrize("per_channel", [False, True])
def test_a_clip_put_back_in_an_opset_10_model_has_attribute_bounds(qm, tmp_path, per_channel):
    """Clip-6 (opset < 11) takes min/max as attributes: a restored Clip with bound inputs was an invalid model."""
    b = qm.Builder()
    b.nodes.append(onnx.helper.make_node("Clip", [b.conv("a", "input", 3, 8, gain=2.0)], ["clip"], name="clip",
                                         min=0.25, max=6.0))
    model = b.model({"input": SHAPE}, {"clip": [1, 8, 16, 16]}, opset=10)
    data = np.random.default_rng(1).standard_normal([4, *SHAPE[1:]]).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    result = quantize_graph(load_model(model), QuantizeOptions(calibration=str(tmp_path / "calib.npy"), calib_size=4,
                                                               per_channel=per_channel))
    onnx.checker.check_model(result.model, full_check=True)
    assert result.problems == []
    assert run_onnxruntime(result.model, {"input": data[:1]})[0].min() >= 0.25 - 6 / 255
