"""An option or argument given as an empty value is refused, never read as "not given" (the default).

`x or default` had turned `--config ''`, `--target ''`, `--max-increase ''`, `--passes ''`, `--eval ''`,
`--baseline ''`, and the API's target="", name="", passes=[], eval_data="" and eval_size=0 into the default,
and Path('') had read `--calib ''` and a model path '' as the working folder; a budgets file's rules = ""
is refused as the CLI's --rules '' and the API's rules="" are.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import segcost
from tests.security.helpers import one_error_line


def conv_model(path) -> str:
    weight = nh.from_array(np.ones((4, 3, 3, 3), np.float32), "W")
    graph = h.make_graph([h.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1], name="conv")], "g",
                         [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], [weight])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return str(path)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    conv_model(tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("file_name, table", [("segcost.toml", "models"), ("pyproject.toml", "tool.segcost.models")])
def test_budgets_file_empty_rules_is_refused_as_the_cli_refuses_it(folder, run_cli, file_name, table):
    (folder / file_name).write_text(f'[[{table}]]\npath = "m.onnx"\nmax_gmacs = 1.0\nverify = true\n'
                                    'rules = ""\n')
    code, out, err = run_cli("check")
    one_error_line(code, err, "rules", "''")
    assert out == ""
    one_error_line(*run_cli("check", "m.onnx", "--max-gmacs", "1", "--verify", "--rules", "")[::2], "''")


def test_empty_config_is_refused_not_replaced_by_the_default_file(folder, run_cli):
    (folder / "segcost.toml").write_text('[[models]]\npath = "m.onnx"\nmax_gmacs = 0.0\n')   # would fail: exit 1
    code, _, err = run_cli("check", "--config", "")
    one_error_line(code, err, "--config: empty path")


def test_empty_target_is_refused_not_replaced_by_the_budgets_file_target(folder, run_cli):
    (folder / "segcost.toml").write_text('[[models]]\npath = "m.onnx"\nmax_latency_ms = 100.0\ntarget = "tda4vm"\n')
    assert run_cli("check")[0] == 0
    code, _, err = run_cli("check", "--target", "")
    one_error_line(code, err, "--target: empty path")
    code, _, err = run_cli("check", "m.onnx", "--target", "", "--max-latency-ms", "100")
    one_error_line(code, err, "--target: empty path")


def test_analyze_empty_target_is_refused_not_ignored(folder, run_cli):
    code, out, err = run_cli("analyze", "m.onnx", "--target", "")
    one_error_line(code, err, "empty path")
    assert out == ""


def test_empty_max_increase_is_refused_not_zero(folder, run_cli):
    assert run_cli("baseline", "save", "m.onnx", "-o", "b.json")[0] == 0
    json.loads((folder / "b.json").read_text())
    assert run_cli("check", "m.onnx", "--baseline", "b.json")[0] == 0
    code, _, err = run_cli("check", "m.onnx", "--baseline", "b.json", "--max-increase", "")
    one_error_line(code, err, "--max-increase ''")


def test_empty_passes_is_refused_not_the_whole_pipeline(folder, run_cli):
    code, _, err = run_cli("optimize", "m.onnx", "--passes", "", "-o", "out.onnx")
    one_error_line(code, err, "unknown pass ''")
    assert not (folder / "out.onnx").exists()


@pytest.mark.parametrize("extra", [(), ("--max-increase", "5")])
def test_empty_baseline_is_refused_not_dropped(folder, run_cli, extra):
    code, _, err = run_cli("check", "m.onnx", "--max-gmacs", "1", "--baseline", "", *extra)   # was: exit 0
    one_error_line(code, err, "baseline: empty path")   # with --max-increase it was "needs --baseline"


@pytest.mark.parametrize("args", [("analyze", ""), ("check", "", "--max-gmacs", "1"), ("diff", "", "m.onnx"),
                                  ("baseline", "save", "", "-o", "b.json"), ("optimize", "", "-o", "out.onnx")])
def test_empty_model_path_is_refused_not_the_working_folder(folder, run_cli, args):
    code, out, err = run_cli(*args)   # was ".: is a directory": Path('') is the working folder
    one_error_line(code, err, "model: empty path")
    assert out == "" and not (folder / "b.json").exists() and not (folder / "out.onnx").exists()


@pytest.mark.parametrize("option", ["--calib", "--eval"])
def test_empty_calibration_or_evaluation_data_is_refused_not_the_working_folder(folder, run_cli, option):
    np.save(folder / "data.npy", np.zeros((2, 3, 16, 16), np.float32))   # the working folder has usable data
    code, _, err = run_cli("optimize", "m.onnx", "--int8", "--calib-size", "2", option, "", "-o", "out.onnx")
    one_error_line(code, err, f"{option}: empty path")
    assert not (folder / "out.onnx").exists()


@pytest.mark.parametrize("call, message", [
    (lambda: segcost.analyze("m.onnx", target=""), "empty path"),
    (lambda: segcost.check("m.onnx", max_latency_ms=100.0, target=""), "target: empty path"),
    (lambda: segcost.check("m.onnx", max_gmacs=1.0, name=""), "name must be a non-empty string"),
    (lambda: segcost.optimize("m.onnx", passes=[]), "passes is empty"),
    (lambda: segcost.quantize("m.onnx", calib_size=2, eval_data=""), "empty path"),   # was: the calibration data
    (lambda: segcost.quantize("m.onnx", calib_size=2, eval_size=0), "sample count 0"),   # was: calib_size
    (lambda: segcost.quantize("m.onnx", calibration=""), "empty path"),   # was: the working folder
])
def test_api_empty_values_are_refused(folder, call, message):
    with pytest.raises(segcost.InputError, match=message) as raised:
        call()
    assert raised.value.exit_code == 2
