"""Concat scale sharing decided over the whole graph (issue 16, item 1)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from segcost.frontends.onnx import load_model
from segcost.passes.qdq_share import concat_scale_mismatches
from segcost.pipeline import run_onnxruntime
from segcost.quant.quantize import QuantizeOptions, quantize_graph

SHAPE = [1, 3, 16, 16]


def _calibration(tmp_path) -> tuple[str, dict]:
    """8 standard-normal samples as a .npy; the feeds are one of them (so no value is out of range)."""
    data = np.random.default_rng(1).standard_normal([8, *SHAPE[1:]]).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    return str(tmp_path / "calib.npy"), {"input": data[:1]}


def _quantize(model, tmp_path, **options):
    calibration, feeds = _calibration(tmp_path)
    result = quantize_graph(load_model(model), QuantizeOptions(calibration=calibration, calib_size=8, **options))
    return result, run_onnxruntime(result.float_model, feeds), run_onnxruntime(result.model, feeds)


def test_one_tensor_into_two_concats_with_10x_different_ranges(qm, tmp_path):
    b = qm.Builder()
    t = b.conv("t", "input", 3, 4, gain=1.0)
    u = b.conv("u", "input", 3, 4, gain=1.0)
    v = b.conv("v", "input", 3, 4, gain=10.0)
    b.op("Concat", [t, u], "a", axis=1)
    b.op("Concat", [t, v], "c", axis=1)
    b.conv("out_a", "a", 8, 2)
    b.conv("out_c", "c", 8, 2)
    model = b.model({"input": SHAPE}, {"out_a": [1, 2, 16, 16], "out_c": [1, 2, 16, 16]})
    result, want, got = _quantize(model, tmp_path)
    assert concat_scale_mismatches(result.graph) == []
    # The small-range Concat keeps its own scale: sharing the large one costs it 3+ bits (cosine ~0.99).
    assert qm.cosine(want[0], got[0]) > 0.999
    assert qm.cosine(want[1], got[1]) > 0.99
    assert any("requantized" in note for note in result.notes)


@pytest.mark.parametrize("fallback", [False, True])
def test_a_skip_that_also_feeds_other_layers_is_not_zeroed_by_its_concat(qm, tmp_path, fallback):
    b = qm.Builder()
    skip = b.conv("skip", "input", 3, 4, gain=1.0)
    big = b.conv("big", "input", 3, 4, gain=1000.0)
    b.op("Concat", [skip, big], "cat", axis=1)
    b.conv("out_cat", "cat", 8, 2)
    b.conv("out_skip", skip, 4, 2)  # the skip's other consumer
    model = b.model({"input": SHAPE}, {"out_cat": [1, 2, 16, 16], "out_skip": [1, 2, 16, 16]})
    result, want, got = _quantize(model, tmp_path, float_fallback=fallback)
    assert np.abs(got[1]).max() > 0
    assert qm.cosine(want[1], got[1]) > 0.999
    assert concat_scale_mismatches(result.graph) == []
    if fallback:  # the skip spans 1/1000 of the Concat: the Concat and its reader stay float
        assert any(note.startswith("kept in float: cat and out_cat") for note in result.notes)
        assert qm.cosine(want[0], got[0]) > 0.999
    else:
        assert any(note.startswith("degraded: Concat cat input from skip") for note in result.notes)


def test_nested_concats_share_one_scale_and_stay_exact_copies(qm, tmp_path):
    b = qm.Builder()
    x = b.conv("x", "input", 3, 4)
    y = b.conv("y", "input", 3, 4, gain=2.0)
    z = b.conv("z", "input", 3, 4, gain=3.0)
    b.op("Concat", [x, y], "inner", axis=1)
    b.op("Concat", ["inner", z], "outer", axis=1)
    b.conv("out", "outer", 12, 2)
    model = b.model({"input": SHAPE}, {"out": [1, 2, 16, 16]})
    result, want, got = _quantize(model, tmp_path, target="tda4vm")
    assert concat_scale_mismatches(result.graph) == []
    assert qm.cosine(want[0], got[0]) > 0.999


@pytest.mark.parametrize("target", ["cpu", "tda4vm"])
def test_a_constant_concat_input_joins_its_concat_scale(qm, tmp_path, target):
    """A ViT class token: Concat(initializer, activation); the constant is stored at the Concat's scale."""
    b = qm.Builder()
    x = b.conv("x", "input", 3, 4, gain=3.0)
    b.const("cls", (0.02 * np.random.default_rng(2).standard_normal([1, 4, 1, 16])).astype(np.float32))
    b.op("Concat", ["cls", x], "cat", axis=2)
    b.conv("out", "cat", 4, 2)
    model = b.model({"input": SHAPE}, {"out": [1, 2, 17, 16]})
    result, want, got = _quantize(model, tmp_path, target=target)
    assert concat_scale_mismatches(result.graph) == []   # failed on every cls-token ViT before
    assert result.problems == []
    assert qm.cosine(want[0], got[0]) > 0.999


@pytest.mark.parametrize("target", ["cpu", "tda4vm"])
@pytest.mark.parametrize("empty", ["constant", "slice"])
def test_an_empty_concat_input_adds_nothing_and_fails_no_check(qm, tmp_path, target, empty):
    """smp UNet (ConvNeXt/MiT encoders) concatenates an empty skip, [1, 0, H, W]: a constant, or a tensor whose
    shape has a 0 dim. It holds no values, so no scale of it matters; the check said "input
    empty_DequantizeLinear_Output is not at the output's scale" and optimize exited 1 (breaker8 R2)."""
    b = qm.Builder()
    x = b.op("Relu", [b.conv("x", "input", 3, 8, gain=2.0)], "relu")
    if empty == "constant":
        b.nodes.append(onnx.helper.make_node("Constant", [], ["empty"], name="empty_skip",
                                             value=onnx.numpy_helper.from_array(np.zeros([1, 0, 16, 16], np.float32))))
    else:
        for name, value in (("start", 0), ("end", 0), ("axis", 1)):
            b.const(name, np.array([value], np.int64))
        b.op("Slice", [x, "start", "end", "axis"], "empty")
    b.op("Concat", [x, "empty"], "cat", axis=1)
    b.conv("out", "cat", 8, 4)
    model = b.model({"input": SHAPE}, {"out": [1, 4, 16, 16]})
    result, want, got = _quantize(model, tmp_path, target=target)
    assert result.problems == [] and concat_scale_mismatches(result.graph) == []
    assert not any("kept in float" in note for note in result.notes)
    assert qm.cosine(want[0], got[0]) > 0.999


def test_power_of_two_scales_requantize_every_constant_sharing_a_scale(qm, tmp_path):
    """Two constants in one scale group share one scale initializer: both are requantized from the old scale."""
    b = qm.Builder()
    x = b.conv("x", "input", 3, 4, gain=3.0)
    rng = np.random.default_rng(3)
    b.const("c1", rng.uniform(1.0, 2.0, [1, 4, 1, 16]).astype(np.float32))
    b.const("c2", rng.uniform(1.0, 2.0, [1, 4, 1, 16]).astype(np.float32))
    b.op("Concat", ["c1", x], "inner", axis=2)
    b.op("Concat", ["c2", "inner"], "outer", axis=2)
    b.conv("out", "outer", 4, 2)
    model = b.model({"input": SHAPE}, {"out": [1, 2, 18, 16]})
    result, want, got = _quantize(model, tmp_path, target="tda4vm", pow2_scales=True)
    assert concat_scale_mismatches(result.graph) == [] and result.problems == []
    assert qm.cosine(want[0][:, :, :2], got[0][:, :, :2]) > 0.99   # the rows computed from the constants
