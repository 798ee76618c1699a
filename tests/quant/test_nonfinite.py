"""A float graph that legitimately holds -inf (an additive attention mask before a Softmax, as in HF
Mask2Former's masked attention): the -inf tensor stays float, metrics never hold NaN, exit codes
follow the accuracy gate (breaker11 F7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

THRESHOLD = -0.5   # masked_fill(y < THRESHOLD, -inf)


def _masked_model(path: Path) -> Path:
    """x -> Conv(3->8, 3x3) -> y; Where(y < THRESHOLD, -inf, y) -> Softmax(axis=1) -> Conv(8->4, 1x1) -> out."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) / 5).astype(np.float32), "wa"),
             numpy_helper.from_array((0.1 * rng.standard_normal(8)).astype(np.float32), "ba"),
             numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "wb"),
             numpy_helper.from_array((0.1 * rng.standard_normal(4)).astype(np.float32), "bb"),
             numpy_helper.from_array(np.array(THRESHOLD, np.float32), "threshold"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "minus_inf")]
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["y"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Less", ["y", "threshold"], ["mask"], name="less"),
             helper.make_node("Where", ["mask", "minus_inf", "y"], ["masked"], name="where"),
             helper.make_node("Softmax", ["masked"], ["attention"], name="softmax", axis=1),
             helper.make_node("Conv", ["attention", "wb", "bb"], ["out"], name="conv_b")]
    graph = helper.make_graph(nodes, "masked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _data(path: Path, amplitude: float, seed: int) -> Path:
    np.save(path, amplitude * np.random.default_rng(seed).standard_normal((4, 3, 16, 16)).astype(np.float32))
    return path


def _run(path: Path, data: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    model = onnx.load(path)
    present = {output.name for output in model.graph.output}
    model.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in outputs if name not in present)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [session.run(outputs, {"x": sample[None]}) for sample in data]
    return [np.concatenate([run[index] for run in runs]).astype(np.float64) for index in range(len(outputs))]


def _strict_json(path: Path) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"{path.name} holds {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _sqnr(want: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(want ** 2) / np.sum((want - got) ** 2)))


def _readers_and_writers(model: onnx.ModelProto, tensor: str) -> list[str]:
    return [node.op_type for node in model.graph.node if tensor in node.input or tensor in node.output]


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_a_minus_inf_mask_seen_in_calibration_stays_float(tmp_path, run_cli, method):
    """Before: the mask calibrated to scale inf (minmax: per-layer SQNR nan, output 11 dB, exit 2 writing the
    JSON; entropy: onnxruntime's histogram raised, exit 2)."""
    model, data = _masked_model(tmp_path / "m.onnx"), _data(tmp_path / "data.npy", 1.0, 1)
    code, out, err = run_cli("optimize", str(model), "--int8", "--calib", str(data), "--eval", str(data),
                             "--calib-size", "4", "--method", method, "-o", str(tmp_path / "q.onnx"))
    report = _strict_json(tmp_path / "q.accuracy.json")
    int8 = onnx.load(tmp_path / "q.onnx")
    # the -inf tensor is never quantized: only its float producer and reader touch it
    assert sorted(_readers_and_writers(int8, "masked")) == ["Softmax", "Where"]
    masked, = _run(model, np.load(data), ["masked"])
    assert "kept in float: where, softmax (NaN/±Inf on the calibration data, which int8 cannot represent at " \
           f"any scale, in 'masked': {int(np.count_nonzero(np.isneginf(masked))):,} values)" in out
    want, = _run(model, np.load(data), ["out"])
    got, = _run(tmp_path / "q.onnx", np.load(data), ["out"])
    mine = _sqnr(want, got)
    assert mine > 25   # 11.2 dB when the mask was quantized (the R7 repro model)
    assert report["outputs"][0]["sqnr_db"] == pytest.approx(mine, abs=0.01)
    assert (code, report["failures"]) == (0, []), err
    layers = [layer["sqnr_db"] for layer in report["layers_by_sensitivity"]]
    assert all(isinstance(value, float) for value in layers) and layers == sorted(layers)
    assert "masked" not in {layer["tensor"] for layer in report["layers_by_sensitivity"]}


def test_a_mask_only_the_evaluation_data_triggers_is_an_infinite_error_not_nan(tmp_path, run_cli):
    """Calibration never masks (small inputs), evaluation does: the quantized mask tensor has a finite int8
    value where float has -inf. Its SQNR is -inf (null in JSON, with the mismatch count), ranked worst;
    the exit code follows the output gate. Before: SQNR nan, ranking unsorted, exit 2, no JSON."""
    model = _masked_model(tmp_path / "m.onnx")
    calib, data = _data(tmp_path / "calib.npy", 0.01, 1), _data(tmp_path / "eval.npy", 1.0, 2)
    code, out, err = run_cli("optimize", str(model), "--int8", "--calib", str(calib), "--eval", str(data),
                             "--calib-size", "4", "-o", str(tmp_path / "q.onnx"))
    report = _strict_json(tmp_path / "q.accuracy.json")
    masked, = _run(model, np.load(data), ["masked"])
    expected_mismatches = int(np.count_nonzero(np.isneginf(masked)))
    assert expected_mismatches > 0
    worst = report["layers_by_sensitivity"][0]
    assert (worst["tensor"], worst["sqnr_db"], worst["nonfinite_mismatches"]) == ("masked", None,
                                                                                   expected_mismatches)
    assert all(layer["sqnr_db"] is not None and layer["nonfinite_mismatches"] == 0
               for layer in report["layers_by_sensitivity"][1:])
    want, = _run(model, np.load(data), ["out"])
    got, = _run(tmp_path / "q.onnx", np.load(data), ["out"])
    mine = _sqnr(want, got)
    assert report["outputs"][0]["sqnr_db"] == pytest.approx(mine, abs=0.01)
    warnings = [line for line in err.splitlines() + out.splitlines() if line.startswith("warning:")]
    if mine < 10:
        assert code == 1 and len(warnings) == len(report["failures"]) == 1, err
    else:
        assert code == 0 and warnings == [] and report["failures"] == [], err
    assert "segcost: error" not in err
    assert f"where ({expected_mismatches:,} positions of 'masked')" in out
    table = out[out.index("most sensitive layers"):].splitlines()
    assert table[3].split() == ["where", "Where", "-inf"] and not any(" nan" in line for line in table)


def _masked_output_model(path: Path) -> Path:
    """x -> Conv(3->8, 3x3) -> y; out = Where(y < THRESHOLD, -inf, y): the float output itself holds -inf."""
    model = onnx.load(_masked_model(path))
    del model.graph.node[3:]
    model.graph.node[2].output[0] = "out"
    del model.graph.initializer[2:4]
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _mismatches(want: np.ndarray, got: np.ndarray) -> int:
    """Positions that are not both finite, not the same infinity and not both NaN (the rule, written out)."""
    both_finite = np.isfinite(want) & np.isfinite(got)
    agree = (want == got) | (np.isnan(want) & np.isnan(got))
    return int(np.count_nonzero(~both_finite & ~agree))


def test_an_output_holding_minus_inf_is_compared_not_refused(tmp_path, run_cli):
    """The int8 output is -inf where its dequantized input crosses the threshold, not exactly where the float
    one does: those positions are an infinite error (SQNR -inf, null in JSON, a failure: exit 1), the other
    metrics are over the positions both hold finite values. Before: exit 2 "the float model computes ..."."""
    model, data = _masked_output_model(tmp_path / "m.onnx"), _data(tmp_path / "data.npy", 1.0, 1)
    code, out, err = run_cli("optimize", str(model), "--int8", "--calib", str(data), "--calib-size", "4",
                             "-o", str(tmp_path / "q.onnx"))
    report = _strict_json(tmp_path / "q.accuracy.json")
    want, = _run(model, np.load(data), ["out"])
    got, = _run(tmp_path / "q.onnx", np.load(data), ["out"])
    mismatches = _mismatches(want, got)
    assert mismatches > 0 and np.isneginf(want).any()
    output = report["outputs"][0]
    assert (output["sqnr_db"], output["nonfinite_mismatches"]) == (None, mismatches)
    finite = np.isfinite(want) & np.isfinite(got)
    error = np.linalg.norm(want[finite] - got[finite]) / np.linalg.norm(want[finite])
    assert output["relative_error"] == pytest.approx(error, rel=1e-6)
    assert code == 1 and report["failures"] == [
        f"int8 output 'out' disagrees with the float one on NaN/±Inf values at {mismatches:,} positions "
        "(SQNR −∞ dB)"], err
    assert f"warning: {report['failures'][0]}" in out + err and "segcost: error" not in err


def test_mixed_measures_an_output_holding_minus_inf_without_nan(tmp_path, run_cli):
    """--mixed's output SQNR runs: -inf == -inf agrees (an all-float variant is exact, not NaN); the full int8
    model's mismatches are counted as the accuracy report counts them. Before: exit 2 (NaN in the JSON)."""
    model, data = _masked_output_model(tmp_path / "m.onnx"), _data(tmp_path / "data.npy", 1.0, 1)
    code, out, err = run_cli("optimize", str(model), "--int8", "--mixed", "--calib", str(data),
                             "--calib-size", "4", "-o", str(tmp_path / "q.onnx"))
    report = _strict_json(tmp_path / "q.accuracy.json")
    mixed = report["mixed"]
    full_int8 = mixed["int8_outputs"][0]   # evaluated on the same 4 samples
    assert full_int8["nonfinite_mismatches"] == mixed["calib_int8_nonfinite_mismatches"] > 0
    assert mixed["calib_sqnr_int8_db"] is None and full_int8["sqnr_db"] is None
    want, = _run(model, np.load(data), ["out"])
    got, = _run(tmp_path / "q.onnx", np.load(data), ["out"])
    assert _mismatches(want, got) == mixed["calib_mixed_nonfinite_mismatches"]
    assert code == (1 if report["failures"] else 0) and "segcost: error" not in err, err


def test_finite_pairs_rule():
    from segcost.quant.nonfinite import finite_pairs

    reference = np.array([1.0, -np.inf, -np.inf, np.nan, 2.0, 3.0, np.inf])
    value = np.array([1.5, -np.inf, 0.0, np.nan, np.inf, np.nan, -np.inf])
    want, got, mismatches = finite_pairs(reference, value)
    # compared: position 0; agreeing: 1 (same infinity) and 3 (both NaN); mismatched: 2, 4, 5, 6
    assert (want.tolist(), got.tolist(), mismatches) == ([1.0], [1.5], 4)
    same = np.arange(6.0)
    assert finite_pairs(same, same + 1)[2] == 0


def test_a_chain_of_nonfinite_tensors_is_kept_float_in_one_note():
    """Mask2Former's masked attention: masked_fill(-inf) -> Add(scores) -> Softmax, both tensors -inf."""
    from segcost.frontends.onnx import load_model
    from segcost.quant.fallback import nonfinite_tensors

    info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4]) for name in ("x", "scores", "y")]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Less", ["r", "zero"], ["m"], name="less"),
             helper.make_node("Where", ["m", "minus_inf", "r"], ["mask"], name="masked_fill"),
             helper.make_node("Add", ["scores", "mask"], ["logits"], name="add"),
             helper.make_node("Softmax", ["logits"], ["y"], name="softmax")]
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "zero"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "minus_inf")]
    graph = load_model(helper.make_model(helper.make_graph(nodes, "g", info[:2], info[2:], inits),
                                         opset_imports=[helper.make_opsetid("", 17)]), label="chain")
    keep, notes = nonfinite_tensors(graph, {"mask": 3, "logits": 2})
    assert keep == ["masked_fill", "add", "softmax"]
    assert notes == ["kept in float: masked_fill, add, softmax (NaN/±Inf on the calibration data, which int8 "
                     "cannot represent at any scale, in 'mask': 3 values, 'logits': 2 values)"]
