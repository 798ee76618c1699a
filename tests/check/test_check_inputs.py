"""check/baseline input rules: shapes of a baseline, its keys, limits, budgets-file keys and paths, outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh


def dynamic_conv(path) -> str:
    """Conv on an input of symbolic H and W: its MACs depend on --input-shape."""
    weight = nh.from_array(np.ones((4, 3, 3, 3), np.float32), "W")
    graph = h.make_graph([h.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1], name="conv")], "g",
                         [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return str(path)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    dynamic_conv(tmp_path / "a" / "m.onnx")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_error(code: int, err: str, *parts: str) -> None:
    assert code == 2 and err.startswith("segcost: error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, err


def test_baseline_at_another_input_shape_is_refused(run_cli, folder):
    assert run_cli("baseline", "save", "a/m.onnx", "--input-shape", "x=1x3x32x32", "-o", "b.json")[0] == 0
    code, _, err = run_cli("check", "a/m.onnx", "--input-shape", "x=1x3x16x16", "--baseline", "b.json")
    one_error(code, err, "recorded at input x=1x3x32x32", "x=1x3x16x16")
    assert run_cli("check", "a/m.onnx", "--input-shape", "x=1x3x32x32", "--baseline", "b.json")[0] == 0


def test_baseline_keys_are_normalised(run_cli, folder):
    assert run_cli("baseline", "save", "./a/m.onnx", "--input-shape", "x=1x3x8x8", "-o", "b.json")[0] == 0
    assert list(json.loads(Path("b.json").read_text())["models"]) == ["a/m.onnx"]
    for spelling in ("a/m.onnx", "./a/m.onnx", str(folder / "a" / "m.onnx"), "a/../a/m.onnx"):
        code, out, err = run_cli("check", spelling, "--input-shape", "x=1x3x8x8", "--baseline", "b.json")
        assert code == 0 and "baseline_macs" in out, (spelling, err)


@pytest.mark.parametrize("value", ["-0.0", "-1", "nan", "inf"])
def test_negative_zero_and_non_finite_limits_are_refused(run_cli, folder, value):
    Path("segcost.toml").write_text(f'[[models]]\npath = "a/m.onnx"\nmax_layer_gmacs = {value}\n')
    one_error(*run_cli("check")[::2], "max_layer_gmacs")


def test_a_small_limit_is_printed_with_its_digits(run_cli, folder):
    code, out, _ = run_cli("check", "a/m.onnx", "--input-shape", "x=1x3x8x8", "--max-gmacs", "0.0002")
    assert code == 0 and "0.0002 GMACs" in out


def test_a_models_typo_is_named(run_cli, folder):
    Path("segcost.toml").write_text('[[model]]\npath = "a/m.onnx"\nmax_gmacs = 1.0\n')
    one_error(*run_cli("check")[::2], "'model'", "did you mean [[models]]")


@pytest.mark.parametrize("where", ["../outside.onnx", "/etc/passwd", "a/../../outside.onnx", "link/m.onnx"])
def test_a_budgets_path_outside_the_config_folder_is_refused(run_cli, tmp_path, monkeypatch, where):
    project = tmp_path / "project"
    project.mkdir()
    dynamic_conv(tmp_path / "outside.onnx")
    (tmp_path / "elsewhere").mkdir()
    dynamic_conv(tmp_path / "elsewhere" / "m.onnx")
    os.symlink(tmp_path / "elsewhere", project / "link")
    (project / "segcost.toml").write_text(f'[[models]]\npath = "{where}"\nmax_gmacs = 1.0\n')
    monkeypatch.chdir(project)
    one_error(*run_cli("check")[::2], "outside the budgets file's folder")


def test_dash_output_is_refused_not_a_file_named_dash(run_cli, folder):
    for command in (["check", "a/m.onnx", "--input-shape", "x=1x3x8x8", "--max-gmacs", "1"],
                    ["analyze", "a/m.onnx", "--input-shape", "x=1x3x8x8"],
                    ["baseline", "save", "a/m.onnx", "--input-shape", "x=1x3x8x8"]):
        one_error(*run_cli(*command, "-o", "-")[::2], "-o -", "leave -o out")
        assert not Path("-").exists()


@pytest.mark.parametrize("name, kind", [("r.HTML", "html"), ("r.Json", "json"), ("r.md", None), ("r", None)])
def test_optimize_report_format_follows_the_suffix(run_cli, folder, name, kind):
    code, _, err = run_cli("optimize", "a/m.onnx", "--input-shape", "x=1x3x8x8", "--no-check", "-o", "o.onnx",
                           "--report", name)
    if kind is None:
        one_error(code, err, "--report", "suffix")
        assert not Path(name).exists() and not Path("o.onnx").exists()
        return
    assert code == 0, err
    text = Path(name).read_text()
    assert text.lstrip().startswith("<!doctype html>" if kind == "html" else "{")


def test_a_saved_baseline_over_2_to_the_63_loads_back_exactly(run_cli, folder):
    """breaker6 R6: `baseline save` wrote a 27-digit MAC count that `check --baseline` refused (exit 2)."""
    side = 1 << 40
    shape = f"x=1x3x{side}x{side}"
    assert run_cli("baseline", "save", "a/m.onnx", "--input-shape", shape, "-o", "b.json")[0] == 0
    macs = json.loads(Path("b.json").read_text())["models"]["a/m.onnx"]["totals"]["macs"]
    assert macs == 4 * 3 * 3 * 3 * side * side > 2**63     # exact: Python's json reads big integers exactly
    code, out, err = run_cli("check", "a/m.onnx", "--input-shape", shape, "--baseline", "b.json", "--format", "json")
    assert code == 0, err
    outcome = next(item for item in json.loads(out)["outcomes"] if item["budget"] == "baseline_macs")
    assert outcome["passed"] and f"{macs:,} -> {macs:,}" in outcome["detail"]


@pytest.mark.parametrize("value", ["-1", "1.5", "true", "\"3\"", "1e400"])
def test_a_baseline_total_that_is_not_a_count_is_refused(run_cli, folder, value):
    assert run_cli("baseline", "save", "a/m.onnx", "--input-shape", "x=1x3x8x8", "-o", "b.json")[0] == 0
    document = json.loads(Path("b.json").read_text())
    document["models"]["a/m.onnx"]["totals"]["macs"] = "VALUE"
    Path("b.json").write_text(json.dumps(document).replace('"VALUE"', value))
    code, _, err = run_cli("check", "a/m.onnx", "--input-shape", "x=1x3x8x8", "--baseline", "b.json")
    one_error(code, err, "b.json")


def test_baseline_save_reads_the_models_as_check_does(run_cli, folder):
    """--input-shape over a budgets file's models, and the budgets file's entry for a MODEL given: both were
    ignored by `baseline save`, so the next `check --baseline` refused the baseline's input shape."""
    Path("segcost.toml").write_text('[[models]]\npath = "a/m.onnx"\ninput_shape = "x=1x3x8x8"\nmax_gmacs = 1\n')
    assert run_cli("baseline", "save", "--input-shape", "x=1x3x16x16", "-o", "b.json")[0] == 0
    assert run_cli("check", "--input-shape", "x=1x3x16x16", "--baseline", "b.json")[0] == 0
    assert run_cli("baseline", "save", "a/m.onnx", "-o", "c.json")[0] == 0
    code, out, err = run_cli("check", "a/m.onnx", "--baseline", "c.json")
    assert code == 0 and "baseline_macs" in out, err


@pytest.mark.parametrize(("entry", "message"), [('target = "tda4vm"', "target is used only with max_latency_ms"),
                                                ('rules = "nonexistent"', "it needs verify = true")])
def test_a_budgets_entry_key_the_check_would_ignore_is_refused(run_cli, folder, entry, message):
    """As `check --target` without a latency budget and `--rules` without `--verify` are (breaker10 R7: exit 0)."""
    (folder / "segcost.toml").write_text(f'[[models]]\npath = "a/m.onnx"\ninput_shape = "x=1x3x8x8"\n'
                                         f'max_gmacs = 1.0\n{entry}\n')
    code, _, err = run_cli("check")
    one_error(code, err, message)
