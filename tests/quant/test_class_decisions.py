"""Class agreement, mIoU and --max-drop for one-channel outputs (breaker6 R8).

An ArgMax class map (N×1×H×W integers) or a binary logit (N×1×H×W float) used to be read as
"one class": argmax of one channel is all zeros, so mIoU was always 100%, the drop 0.00, and
`--max-drop 0` passed while pixels changed class.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from segcost.frontends.onnx import load_model
from segcost.pipeline import run_onnxruntime
from segcost.quant.accuracy import AccuracyReport, OutputAgreement, compare_models
from segcost.quant.calibration import open_source
from segcost.quant.decisions import PairCounts
from segcost.quant.quantize import QuantizeOptions, quantize_graph

SHAPE = [1, 3, 16, 16]


def _head(qm, form: str) -> onnx.ModelProto:
    """Two convs; "argmax": 6 scores → ArgMax(keepdims) int64 1×1×H×W; "binary": one logit channel;
    "probability": that logit through a Sigmoid and a ×1 Resize (the decision is p > 0.5, found through the Resize)."""
    b = qm.Builder(seed=0)   # seed 0: 62% foreground, int8 flips 0.6% of the decisions
    hidden = b.op("Relu", [b.conv("a", "input", 3, 16, gain=2.0, kernel=3)], "a_relu")
    if form in ("binary", "probability"):
        b.conv("logit", hidden, 16, 1, kernel=3)
        if form == "binary":
            return b.model({"input": SHAPE}, {"logit": [1, 1, 16, 16]})
        b.const("roi", np.zeros(0, np.float32))
        b.const("scales", np.ones(4, np.float32))
        b.op("Resize", [b.op("Sigmoid", ["logit"], "p"), "roi", "scales"], "prob", mode="linear")
        return b.model({"input": SHAPE}, {"prob": [1, 1, 16, 16]})
    b.conv("scores", hidden, 16, 6)
    b.op("ArgMax", ["scores"], "classes", axis=1, keepdims=1)
    model = b.model({"input": SHAPE}, {"scores": [1, 6, 16, 16]})
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("classes", TensorProto.INT64, [1, 1, 16, 16]))
    return model


def _quantized(model, tmp_path, labels: bool = False):
    data = np.random.default_rng(0).random([8, *SHAPE[1:]]).astype(np.float32)
    if labels:
        path = tmp_path / "data.npz"
        np.savez(path, input=data, labels=np.random.default_rng(1).integers(0, 6, (8, 16, 16)))
    else:
        path = tmp_path / "data.npy"
        np.save(path, data)
    result = quantize_graph(load_model(model), QuantizeOptions(calibration=str(path), calib_size=8))
    source = open_source(str(path), "input", tuple(SHAPE), 8)
    return result, source, data


def _decided(values: np.ndarray, form: str) -> np.ndarray:
    return {"binary": values[:, 0] > 0, "probability": values[:, 0] > 0.5}.get(form, values[:, 0])


@pytest.mark.parametrize(("form", "decision"), [("argmax", "class ids"), ("binary", "logit > 0"),
                                               ("probability", "probability > 0.5")])
def test_a_one_channel_output_reports_the_pixels_whose_class_changed(qm, tmp_path, form, decision):
    result, source, data = _quantized(_head(qm, form), tmp_path)
    report = compare_models(result.float_model, result.model, source, per_layer=False)
    changed = []
    for index in range(len(data)):
        feeds = {"input": data[index:index + 1]}
        want, got = (_decided(run_onnxruntime(model, feeds)[0], form) for model in (result.float_model, result.model))
        changed.append(np.mean(want != got))
    measured = 100 * float(np.mean(changed))
    assert measured > 0   # int8 does change some pixels here, so a drop of 0.00 would be false
    output = report.outputs[0]
    assert output.decision == decision
    assert output.argmax_agreement_pct == pytest.approx(100 - measured)
    assert report.miou_drop is None                     # no labels
    assert report.drop() == pytest.approx(measured)     # was 0.0: "cannot measure" read as "no drop"


@pytest.mark.parametrize("form", ["argmax", "binary", "probability"])
def test_mIoU_of_a_one_channel_output_is_over_its_classes_not_one(qm, tmp_path, form):
    result, source, data = _quantized(_head(qm, form), tmp_path, labels=True)
    report = compare_models(result.float_model, result.model, source, per_layer=False)
    labels = np.load(tmp_path / "data.npz")["labels"]
    counts = PairCounts()
    for index in range(len(data)):
        pred = _decided(run_onnxruntime(result.float_model, {"input": data[index:index + 1]})[0], form)[0]
        truth = labels[index] > 0 if form != "argmax" else labels[index]
        counts.add(truth, pred, np.ones(truth.shape, bool))
    assert report.miou_float == pytest.approx(counts.miou())
    assert report.miou_float < 100   # random labels: always 100% over "one class" before


def test_pair_counts_miou_over_the_ids_present():
    counts = PairCounts()
    label = np.array([[0, 0, 7, 7]])
    counts.add(label, np.array([[0, 7, 7, 7]]), np.ones(label.shape, bool))
    # id 0: 1 hit / (2 + 1 - 1); id 7: 2 hits / (2 + 3 - 2)
    assert counts.miou() == pytest.approx(100 * (0.5 + 2 / 3) / 2)


def test_a_drop_that_cannot_be_measured_is_none_not_zero():
    output = OutputAgreement("features", 30.0, 0.03, 0.1, 0.999, None)
    report = AccuracyReport(4, [output], [])
    assert report.drop() is None
    assert "'features'" in report.unmeasured_reason()


def test_max_drop_fails_when_no_output_has_a_class(qm, run_cli, tmp_path):
    """A pooled feature vector (1×8) has no per-pixel class: `--max-drop` must not pass silently."""
    b = qm.Builder()
    b.op("Flatten", [b.op("GlobalAveragePool", [b.conv("a", "input", 3, 8)], "pool")], "features")
    onnx.save_model(b.model({"input": SHAPE}, {"features": [1, 8]}), tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random([2, *SHAPE[1:]]).astype(np.float32))
    code, out, err = run_cli("optimize", str(tmp_path / "m.onnx"), "--int8", "--calib", str(tmp_path / "calib.npy"),
                             "--calib-size", "2", "--max-drop", "5", "-o", str(tmp_path / "m8.onnx"))
    assert code == 1, (out, err)
    assert "--max-drop 5.0 cannot be checked: no output has a per-pixel class" in err
