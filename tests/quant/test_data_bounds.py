"""Calibration/evaluation data and int8 numbers are checked before any work: non-finite values, sample
counts over the bound and a --max-drop that is not a finite number >= 0 are one error line, exit 2.

Found on inputs from outside the project: NaN calibration data gave numpy RuntimeWarnings on
stderr, an int8 model with every scale 1.0, exit 1 and an accuracy JSON with NaN tokens;
--calib-size 100000000000 ran without limit; --max-drop nan disabled the gate.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.errors import InputError
from segcost.quant.calibration import MAX_SAMPLES, open_source


def _model(path) -> None:
    weight = numpy_helper.from_array(np.linspace(-1, 1, 4 * 3 * 9, dtype=np.float32).reshape(4, 3, 3, 3), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _data(bad: str, dtype=np.float32) -> np.ndarray:
    data = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(dtype)
    flat = data.reshape(-1)
    flat[:5] = {"nan": np.nan, "inf": -np.inf, "overflow": 1e308}[bad]   # 1e308 is inf as float32
    return data


@pytest.mark.parametrize("bad, suffix, dtype", [("nan", ".npy", np.float32), ("inf", ".npz", np.float32),
                                                ("overflow", ".npy", np.float64)])
def test_non_finite_calibration_data_is_refused_with_one_line(tmp_path, run_cli, bad, suffix, dtype):
    model, data = tmp_path / "m.onnx", tmp_path / f"calib{suffix}"
    _model(model)
    if suffix == ".npz":
        np.savez(data, x=_data(bad, dtype))
    else:
        np.save(data, _data(bad, dtype))
    code, _, err = run_cli("optimize", str(model), "--int8", "--calib", str(data), "--calib-size", "2",
                           "-o", str(tmp_path / "o.onnx"))
    assert code == 2
    assert err.splitlines() == [f"segcost: error: {data}: 5 of 1,536 values are not finite (NaN or ±Inf, counted "
                                "as float32); calibration and evaluation data must be finite"]
    assert not (tmp_path / "o.onnx").exists() and not (tmp_path / "o.accuracy.json").exists()


def test_a_non_finite_file_in_a_folder_is_named(tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((1, 3, 16, 16), np.float32))
    np.save(folder / "b.npy", _data("nan")[:1])
    source = open_source(str(folder), "x", (1, 3, 16, 16), size=2)
    with pytest.raises(InputError, match=r"b\.npy: 5 of 768 values are not finite"):
        list(source)


@pytest.mark.parametrize("args, message", [
    (("--calib-size", "100000000000"), "--calib-size 100,000,000,000 is outside 1..10,000"),
    (("--eval-size", str(MAX_SAMPLES + 1)), "--eval-size 10,001 is outside 1..10,000"),
    (("--max-drop", "nan"), "--max-drop nan must be a finite number"),
    (("--max-drop", "inf"), "--max-drop inf must be a finite number"),
    (("--max-drop", "-5"), "--max-drop -5.0 must be a finite number"),
])
def test_int8_numbers_are_refused_before_any_work(tmp_path, run_cli, args, message):
    model = tmp_path / "m.onnx"
    _model(model)
    code, out, err = run_cli("optimize", str(model), "--int8", *args, "-o", str(tmp_path / "o.onnx"))
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"segcost: error: {message}")
    assert not (tmp_path / "o.onnx").exists()


def test_the_library_bounds_the_sample_count_too():
    with pytest.raises(InputError, match="outside 1..10,000"):
        open_source("synthetic", "x", (1, 1, 16, 16), size=MAX_SAMPLES + 1)


def test_a_float_model_that_computes_nan_on_finite_data_is_refused(tmp_path, run_cli):
    """Log of a negative input: NaN outputs would make every accuracy metric NaN in the JSON."""
    model, data = tmp_path / "m.onnx", tmp_path / "calib.npy"
    weight = numpy_helper.from_array(np.linspace(-1, 1, 4 * 3 * 9, dtype=np.float32).reshape(4, 3, 3, 3), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
                               helper.make_node("Log", ["c"], ["y"], name="log")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.save(data, np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32))
    code, _, err = run_cli("optimize", str(model), "--int8", "--calib", str(data), "--calib-size", "2",
                           "-o", str(tmp_path / "o.onnx"))
    assert code == 2
    assert err.splitlines()[-1].startswith("segcost: error: the float model computes ")
    assert "RuntimeWarning" not in err
    assert not (tmp_path / "o.accuracy.json").exists()
