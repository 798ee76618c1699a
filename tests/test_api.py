"""The Python API (segcost.analyze/optimize/quantize/cost/check): same results as the CLI, typed errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import segcost
from segcost.analyzer import AnalysisResult
from segcost.budget.evaluate import CheckResult
from segcost.pipeline import OptimizeResult
from segcost.samples import deeplabv3lite
from segcost.targets.results import TargetReport
from tests.conftest import weight

ROOT = Path(__file__).resolve().parents[1]


def _conv_bn_model(height: int | str = 16) -> onnx.ModelProto:
    """x[1,3,H,16] -> Conv 3->8 3x3 pad 1 (bias-free) -> BatchNormalization -> Relu."""
    scale, bias, mean, var = (np.abs(weight(8)) + 0.5 for _ in range(4))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "convbn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, height, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight(8, 3, 3, 3), "w"), numpy_helper.from_array(scale, "s"),
         numpy_helper.from_array(bias, "b"), numpy_helper.from_array(mean, "m"), numpy_helper.from_array(var, "v")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


CONV_MACS = 16 * 16 * 8 * 3 * 9   # N·H·W·C_out·C_in·k·k at 16x16


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "convbn.onnx"
    onnx.save_model(_conv_bn_model(), path)
    return path


def test_analyze_a_path_and_a_proto_give_the_cli_json(model_file, run_cli):
    from_path = segcost.analyze(model_file)
    from_proto = segcost.analyze(onnx.load(model_file))
    assert isinstance(from_path, AnalysisResult) and isinstance(from_path, segcost.Analysis)
    assert from_path.totals.macs == from_proto.totals.macs == CONV_MACS
    code, out, _ = run_cli("analyze", str(model_file), "--format", "json")
    assert code == 0
    assert json.loads(json.dumps(from_path.to_dict())) == json.loads(out)


@pytest.mark.parametrize("shape", [(1, 3, 32, 16), {"x": (1, 3, 32, 16)}, "x=1x3x32x16", ["1x3x32x16"],
                                   np.zeros((1, 3, 32, 16))])
def test_input_shape_forms(shape):
    result = segcost.analyze(_conv_bn_model("H"), shape)
    assert result.totals.macs == 2 * CONV_MACS
    assert result.model.inputs[0].shape == [1, 3, 32, 16]


def test_count_and_target_match_the_cli(model_file, run_cli):
    result = segcost.analyze(model_file, count=["bn", "bias"], target="tda4vm")
    code, out, _ = run_cli("analyze", str(model_file), "--format", "json", "--count", "bias,bn", "--target", "tda4vm")
    assert code == 0
    cli = json.loads(out)
    assert result.to_dict()["macs_by_convention"] == cli["macs_by_convention"]
    assert result.to_dict()["target"]["totals"] == cli["target"]["totals"]
    assert result.target.totals.latency_ms > 0


@pytest.mark.parametrize("call, message", [
    (lambda: segcost.analyze(42), "expected a path, an onnx.ModelProto"),
    (lambda: segcost.analyze("missing.onnx"), "no such file"),
    (lambda: segcost.analyze(None, count="macs"), "unknown category macs"),
    (lambda: segcost.analyze(None, (1, 3, 0, 8)), "positive"),
    (lambda: segcost.analyze(None, target="nonesuch"), "nonesuch"),
    (lambda: segcost.check(None, max_gmacs=float("nan")), "non-negative finite"),
    (lambda: segcost.check(None, max_params_m=-1), "non-negative finite"),
    (lambda: segcost.check(None, max_gmacs=5, max_increase=2), "needs a baseline"),
    (lambda: segcost.check(None), "no limits"),
    # what the CLI refuses as options it would ignore (breaker10 R3: these passed)
    (lambda: segcost.check(None, max_gmacs=10, target="tda4vm"), "used only with max_latency_ms"),
    (lambda: segcost.check(None, max_gmacs=10, rules="nonexistent-rules"), "rules needs verify"),
    (lambda: segcost.check(None, max_gmacs=10, verify=True, rules=""), "unknown rule set ''"),   # as the CLI
])
def test_errors_are_the_cli_error_classes(call, message):
    with pytest.raises(segcost.InputError, match=message) as raised:
        call()
    assert raised.value.exit_code == 2


def test_symbolic_dim_without_shape_is_a_shape_error():
    with pytest.raises(segcost.ShapeError, match="'x'"):
        segcost.analyze(_conv_bn_model("H"))


def test_to_pandas_without_pandas_is_a_clear_error(monkeypatch, model_file):
    monkeypatch.setitem(sys.modules, "pandas", None)   # import pandas raises ImportError
    with pytest.raises(segcost.InputError, match="pip install pandas"):
        segcost.analyze(model_file).to_pandas()


def test_to_pandas_gives_one_record_per_layer(pandas_records, model_file):
    seen = pandas_records
    result = segcost.analyze(model_file, target="tda4vm")
    assert result.to_pandas() == "frame"
    rows = seen["rows"]
    assert [row["name"] for row in rows] == [layer.name for layer in result.layers]
    assert sum(row["macs"] for row in rows) == result.totals.macs
    assert rows[0]["target_ms"] is not None and rows[0]["target_placement"]


def test_repr_html_shows_the_summary_and_top_layers():
    result = segcost.analyze()
    html = result._repr_html_()
    biggest = max(result.layers, key=lambda layer: layer.macs)
    assert f"{result.totals.macs:,} MACs" in html and biggest.name in html
    assert html.count("<tr>") == 1 + 10    # header + top 10 layers
    assert "<script" not in html


def test_cost_is_the_cli_report(model_file, run_cli):
    report = segcost.cost(model_file, target="tda4vm")
    assert isinstance(report, TargetReport) and isinstance(report, segcost.Cost)
    code, out, _ = run_cli("cost", str(model_file), "--target", "tda4vm", "--format", "json")
    assert code == 0
    assert json.loads(json.dumps(report.to_dict())) == json.loads(out)
    assert "segcost cost" in report._repr_html_()


def test_check_budgets_and_baseline(model_file, tmp_path, run_cli):
    over = segcost.check(model_file, max_gmacs=CONV_MACS / 1e9 / 2)
    under = segcost.check(model_file, max_gmacs=1.0, max_unsupported_ops=0)
    assert isinstance(over, CheckResult) and not over.passed and under.passed
    assert [outcome.budget for outcome in under.outcomes] == ["max_gmacs", "max_unsupported_ops"]
    baseline = tmp_path / "base.json"
    code, _, err = run_cli("baseline", "save", str(model_file), "-o", str(baseline))
    assert code == 0, err
    again = segcost.check(model_file, baseline=str(baseline), max_increase="0%")
    assert again.passed and {outcome.budget for outcome in again.outcomes} == {"baseline_macs", "baseline_params"}


def test_optimize_writes_the_fused_model_and_never_over_its_input(model_file, tmp_path):
    output = tmp_path / "fused.onnx"
    result = segcost.optimize(model_file, output=str(output))
    assert isinstance(result, OptimizeResult) and isinstance(result, segcost.Optimized)
    assert "BatchNormalization" not in {node.op_type for node in onnx.load(output).graph.node}
    assert result.after.totals.macs == result.before.totals.macs == CONV_MACS
    assert result.max_abs_diff is not None and result.to_dict()["after"]["macs"] == CONV_MACS
    with pytest.raises(segcost.InputError):
        segcost.optimize(model_file, output=str(model_file))


def test_quantize_returns_int8_model_and_accuracy(model_file):
    result = segcost.quantize(model_file, calib_size=2, target="tda4vm")
    ops = {node.op_type for node in result.model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert result.accuracy.samples > 0 and result.int8_after.totals.macs == CONV_MACS
    zero_points = [init for init in result.model.graph.initializer if init.name.endswith("zero_point")]
    assert zero_points and all(not numpy_helper.to_array(init).any() for init in zero_points)


def test_check_and_optimize_stay_callable_after_the_modules_behind_them_are_imported():
    code = ("import segcost.budget.evaluate, segcost.pipeline, segcost\n"
            "from segcost.budget.budgets import ModelBudget\n"
            "print(segcost.check(max_gmacs=10).passed, segcost.pipeline.ATOL, segcost.optimize().after.totals.macs)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split() == ["True", "0.0001", str(segcost.analyze().totals.macs)]



def test_no_submodule_shadows_an_api_name():
    # importing segcost.<name> binds the submodule to the package attribute, replacing the API function
    package = Path(segcost.__file__).parent
    shadowed = [name for name in segcost.__all__
                if (package / f"{name}.py").exists() or (package / name / "__init__.py").exists()]
    assert shadowed == []

HEAVY = ("onnx", "onnxruntime", "numpy", "torch")


@pytest.mark.parametrize("argv", [["--version"], ["analyze", "--help"], ["check", "--help"]])
def test_start_up_imports_nothing_heavy(argv):
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: print(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
            "import segcost\nfrom segcost.cli import main\nmain(sys.argv[1:])")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                         check=False).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_analyzing_onnx_through_the_api_never_imports_torch(model_file):
    code = (f"import sys, segcost\nsegcost.analyze({str(model_file)!r}, target='tda4vm')\n"
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split()[0] == "False"


def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert blocks, "README's Python API section has no python example"
    monkeypatch.chdir(tmp_path)
    onnx.save_model(deeplabv3lite(width=0.5, num_classes=8, height=128, width_px=128), tmp_path / "model.onnx")
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - the README is ours


@pytest.mark.torch
def test_module_input_leaves_state_dict_and_train_flags_alone():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Conv2d(8, 4, 1))
    net.train()
    net[1].eval()   # mixed flags must come back exactly
    flags = [module.training for module in net.modules()]
    state = {key: value.clone() for key, value in net.state_dict().items()}
    result = segcost.analyze(net, (1, 3, 16, 16))
    by_tensor = segcost.analyze(net, torch.zeros(1, 3, 16, 16))
    assert result.totals.macs == by_tensor.totals.macs == 16 * 16 * (8 * 3 * 9 + 4 * 8)
    assert [module.training for module in net.modules()] == flags
    assert list(net.state_dict()) == list(state)
    assert all(torch.equal(net.state_dict()[key], value) for key, value in state.items())
    with pytest.raises(segcost.InputError, match="input_shape"):
        segcost.analyze(net)


def test_a_file_read_by_an_earlier_call_may_be_written_by_a_later_one(model_file, tmp_path):
    """Inputs are per call: analyzing out.onnx first does not make it a protected input of the next call."""
    out = tmp_path / "out.onnx"
    segcost.optimize(model_file, output=str(out))
    segcost.analyze(str(out))
    segcost.optimize(model_file, output=str(out))   # rewriting it is fine
    with pytest.raises(segcost.InputError, match="same file"):
        segcost.optimize(str(out), output=str(out))
