"""The decision rule of an output is read from the graph, not from its shape (breaker7 R3, R11, R8).

Every float N×1×H×W output used to be decided as a binary logit (> 0): a float class map
(ArgMax → Cast(float)) hid every change between two non-zero ids, and a probability not made by
a Sigmoid (softmax(x, 1)[:, 1:2]) was thresholded at 0. An NHWC output was read as NCHW (H as C).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from segcost.frontends.onnx import load_model
from segcost.pipeline import run_onnxruntime
from segcost.quant.accuracy import compare_models
from segcost.quant.calibration import open_source
from segcost.quant.decisions import decision_basis, decision_conflict, decision_kind, output_source
from segcost.quant.quantize import QuantizeOptions, quantize_graph

SHAPE = [1, 3, 16, 16]


def _scores(qm, classes: int, gain: float = 1.0):
    b = qm.Builder(seed=0)
    hidden = b.op("Relu", [b.conv("a", "input", 3, 16, gain=2.0, kernel=3)], "a_relu")
    b.conv("scores", hidden, 16, classes, gain=gain)
    return b


def _typed(model: onnx.ModelProto, name: str, elem: int, shape: list[int]) -> onnx.ModelProto:
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info(name, elem, shape))
    onnx.checker.check_model(model)
    return model


def float_class_map(qm) -> onnx.ModelProto:
    """6 scores → ArgMax(keepdims) → Cast(float): a float32 1×1×H×W map of class ids."""
    b = _scores(qm, 6)
    b.op("Cast", [b.op("ArgMax", ["scores"], "ids", axis=1, keepdims=1)], "classes", to=TensorProto.FLOAT)
    return b.model({"input": SHAPE}, {"classes": [1, 1, 16, 16]})


def softmax_foreground(qm) -> onnx.ModelProto:
    """2 scores → Softmax(axis 1) → Slice [:, 1:2]: the foreground probability, no Sigmoid in the graph."""
    b = _scores(qm, 2, gain=3.0)
    for name, value in (("starts", [1]), ("ends", [2]), ("axes", [1])):
        b.const(name, np.array(value, np.int64))
    b.op("Slice", [b.op("Softmax", ["scores"], "p", axis=1), "starts", "ends", "axes"], "prob")
    return b.model({"input": SHAPE}, {"prob": [1, 1, 16, 16]})


def nhwc(qm, classes: int) -> onnx.ModelProto:
    """scores → Transpose perm [0, 2, 3, 1]: N×H×W×C (TF layout)."""
    b = _scores(qm, classes)
    b.op("Transpose", ["scores"], "out", perm=[0, 2, 3, 1])
    return b.model({"input": SHAPE}, {"out": [1, 16, 16, classes]})


def _report(model, tmp_path):
    data = np.random.default_rng(0).random([8, *SHAPE[1:]]).astype(np.float32)
    np.save(tmp_path / "data.npy", data)
    result = quantize_graph(load_model(model), QuantizeOptions(calibration=str(tmp_path / "data.npy"), calib_size=8))
    report = compare_models(result.float_model, result.model, open_source(str(tmp_path / "data.npy"), "input",
                                                                          tuple(SHAPE), 8), per_layer=False)
    changed = []
    for index in range(len(data)):
        feeds = {"input": data[index:index + 1]}
        changed.append([run_onnxruntime(m, feeds)[0] for m in (result.float_model, result.model)])
    return report, changed


def _changed_pct(pairs, decide) -> float:
    return 100 * float(np.mean([np.mean(decide(want) != decide(got)) for want, got in pairs]))


@pytest.mark.parametrize(("build", "decision", "found", "decide"), [
    (float_class_map, "class ids", "ArgMax → Cast in the graph", lambda v: v[:, 0]),
    (softmax_foreground, "probability > 0.5", "Softmax → Slice in the graph", lambda v: v[:, 0] > 0.5),
    (lambda qm: nhwc(qm, 1), "logit > 0", "channels last", lambda v: v[..., 0] > 0),
    (lambda qm: nhwc(qm, 6), "argmax", "channels last", lambda v: v.argmax(-1)),
])
def test_the_decision_is_what_the_graph_computes(qm, tmp_path, build, decision, found, decide):
    report, pairs = _report(build(qm), tmp_path)
    measured = _changed_pct(pairs, decide)
    output = report.outputs[0]
    assert output.decision == decision          # was "logit > 0" for the first two, "argmax" over H for NHWC
    assert found in output.decision_basis
    assert found in output.agreement_text
    assert measured > 0
    assert output.argmax_agreement_pct == pytest.approx(100 - measured)
    assert report.drop() == pytest.approx(measured)


def test_a_one_channel_map_last_without_evidence_is_one_channel_not_h_channels(qm, tmp_path):
    """N×H×W×1 through a Reshape (no Transpose: no layout evidence): a one-channel logit map, never argmax over H."""
    b = _scores(qm, 1)
    b.const("shape", np.array([1, 16, 16, 1], np.int64))
    b.op("Reshape", ["scores", "shape"], "out")
    report, pairs = _report(b.model({"input": SHAPE}, {"out": [1, 16, 16, 1]}), tmp_path)
    assert report.outputs[0].decision == "logit > 0"
    assert report.outputs[0].argmax_agreement_pct == pytest.approx(100 - _changed_pct(pairs, lambda v: v[..., 0] > 0))


def test_an_assumed_logit_says_so(qm, tmp_path):
    b = _scores(qm, 1)
    b.op("Clip", ["scores", b.const("lo", np.array(-2, np.float32)), b.const("hi", np.array(2, np.float32))], "out")
    report, _ = _report(b.model({"input": SHAPE}, {"out": [1, 1, 16, 16]}), tmp_path)
    assert report.outputs[0].decision == "logit > 0"
    assert report.outputs[0].decision_basis.startswith("assumed a logit: its last op Clip is no ArgMax/TopK")


def _cli(qm, run_cli, tmp_path, model):
    onnx.save_model(model, tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random([2, *SHAPE[1:]]).astype(np.float32))
    return run_cli("optimize", str(tmp_path / "m.onnx"), "--int8", "--calib", str(tmp_path / "calib.npy"),
                   "--calib-size", "2", "--max-drop", "5", "-o", str(tmp_path / "m8.onnx"))


def test_class_ids_that_are_not_whole_numbers_fail_the_gate(qm, run_cli, tmp_path):
    """ArgMax → Cast(float) → bilinear Resize ×2: the "ids" are blended; the class-id rule cannot be checked."""
    model = float_class_map(qm)
    model.graph.node[-1].output[0] = "small"
    model.graph.initializer.extend([onnx.numpy_helper.from_array(np.zeros(0, np.float32), "roi"),
                                    onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])
    model.graph.node.append(helper.make_node("Resize", ["small", "roi", "scales"], ["classes"], mode="linear"))
    model = _typed(model, "classes", TensorProto.FLOAT, [1, 1, 32, 32])
    code, out, err = _cli(qm, run_cli, tmp_path, model)
    assert code == 1, (out, err)
    assert "--max-drop 5.0 cannot be checked" in err
    assert "a class-id rule on values that are not whole numbers" in err
    assert "no class agreement (class ids by ArgMax → Cast → Resize in the graph" in out


def test_a_logit_of_non_negative_whole_numbers_fails_the_gate(qm, run_cli, tmp_path):
    """Floor(Relu(scores)): an untraced class map read as a logit would call every id > 0 "foreground"."""
    b = _scores(qm, 1, gain=8.0)
    b.op("Floor", [b.op("Relu", ["scores"], "r")], "out")
    code, out, err = _cli(qm, run_cli, tmp_path, b.model({"input": SHAPE}, {"out": [1, 1, 16, 16]}))
    assert code == 1, (out, err)
    assert "a logit rule on non-negative whole numbers" in err


def test_topk_indices_are_class_ids_and_its_values_are_not(qm):
    b = _scores(qm, 6)
    b.const("k", np.array([1], np.int64))
    b.nodes.append(helper.make_node("TopK", ["scores", "k"], ["top", "index"], axis=1, name="topk"))
    b.op("Cast", ["index"], "ids", to=TensorProto.FLOAT)
    model = b.model({"input": SHAPE}, {"ids": [1, 1, 16, 16]})
    model.graph.output.append(helper.make_tensor_value_info("top", TensorProto.FLOAT, [1, 1, 16, 16]))
    ids, top = output_source(model, "ids"), output_source(model, "top")
    assert (ids.op, ids.through) == ("TopK", ("Cast",))
    assert decision_kind(np.zeros([1, 1, 16, 16], np.float32), ids.op) == "class ids"
    assert decision_kind(np.zeros([1, 1, 16, 16], np.float32), top.op) == "logit > 0"
    assert decision_basis("logit > 0", top).startswith("assumed a logit: its last op TopK values")


def test_values_that_contradict_the_rule_are_named():
    assert "outside [0, 1]" in decision_conflict("probability > 0.5", -0.02, 1.0, False)
    assert decision_conflict("probability > 0.5", 0.0, 1.0, False) is None
    assert decision_conflict("class ids", 0, 7, True) is None
    assert decision_conflict("logit > 0", -3.5, 2.0, False) is None
    assert decision_conflict("argmax", 0, 7, True) is None
