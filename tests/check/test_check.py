"""`segcost check` / `baseline save` / `diff`: exit codes, formats, baselines, config errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import onnx
import pytest

from segcost.samples import deeplabv3lite

SMALL = dict(width=0.35, num_classes=4, height=64, width_px=64)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    onnx.save_model(deeplabv3lite(**SMALL), tmp_path / "models" / "lite.onnx")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _macs(path) -> int:
    from segcost.analyzer import analyze
    from segcost.frontends.onnx import load

    return analyze(load(path)).totals.macs


def test_under_and_over_budget(run_cli, project):
    gmacs = _macs("models/lite.onnx") / 1e9
    code, out, _ = run_cli("check", "models/lite.onnx", "--max-gmacs", str(gmacs * 1.01))
    assert code == 0 and "all 1 budgets hold" in out
    code, out, _ = run_cli("check", "models/lite.onnx", "--max-gmacs", str(gmacs * 0.99))
    assert code == 1 and "FAIL" in out and "exceeded" in out


def test_budgets_file_and_junit(run_cli, project):
    gmacs = _macs("models/lite.onnx") / 1e9
    (project / "segcost.toml").write_text(
        "[[models]]\n"
        'name = "lite"\n'
        'path = "models/lite.onnx"\n'
        f"max_gmacs = {gmacs * 2}\n"
        "max_params_m = 0.001\n"      # fails
        "max_layer_gmacs = 10\n"
        "max_unsupported_ops = 0\n"
        "verify = true\n")
    code, out, _ = run_cli("check", "--format", "junit")
    assert code == 1
    root = ElementTree.fromstring(out.split("\n", 1)[1] if out.startswith("<?xml") else out)
    cases = root.findall(".//testcase")
    assert [case.get("name") for case in cases] == ["max_gmacs", "max_params_m", "max_layer_gmacs",
                                                    "max_unsupported_ops", "verify"]
    assert root.get("tests") == "5" and root.get("failures") == "1"
    assert [case.get("name") for case in cases if case.find("failure") is not None] == ["max_params_m"]
    code, out, _ = run_cli("check", "--format", "github")
    assert code == 1 and out.count("::error") == 1 and "file=" in out and out.count("::notice") == 4
    code, out, _ = run_cli("check", "--format", "md")
    assert code == 1 and out.startswith("### ❌")


def test_pyproject_tool_section(run_cli, project):
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[[tool.segcost.models]]\npath = "models/lite.onnx"\nmax_gmacs = 100\n')
    code, out, _ = run_cli("check", "--format", "json")
    assert code == 0 and json.loads(out)["passed"] is True


@pytest.mark.parametrize("content,message", [
    ("[[models]]\npath = 1\nmax_gmacs = -1\n", "non-negative"),
    ("[[models]]\npath = \"a.onnx\"\nzoo = \"b\"\n", "exactly one of"),
    ("[[models]]\npath = \"a.onnx\"\nmax_gmac = 1\n", "unknown key 'max_gmac'"),
    ("[[models]\n", "invalid TOML"),
    ("[[models]]\npath = \"a.onnx\"\nmax_latency_ms = 3\n", "needs target"),
])
def test_bad_budget_files_exit_2(run_cli, project, content, message):
    (project / "segcost.toml").write_text(content)
    code, _, err = run_cli("check")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_no_budgets_exit_2(run_cli, project):
    code, _, err = run_cli("check")   # no MODEL, no budgets file: the built-in model, but no limit
    assert code == 2 and "no limits" in err


def test_baseline_regression_is_caught(run_cli, project):
    code, _, _ = run_cli("baseline", "save", "models/lite.onnx", "-o", "base.json")
    assert code == 0 and json.loads((project / "base.json").read_text())["schema"] == "segcost.baseline/1"
    onnx.save_model(deeplabv3lite(**{**SMALL, "num_classes": 40}), project / "models" / "lite.onnx")  # bigger head
    code, out, _ = run_cli("check", "models/lite.onnx", "--baseline", "base.json", "--max-increase", "1%")
    assert code == 1 and "baseline_macs" in out
    code, out, _ = run_cli("check", "models/lite.onnx", "--baseline", "base.json", "--max-increase", "50%")
    assert code == 0
    code, _, err = run_cli("check", "models/lite.onnx", "--baseline", "missing.json")
    assert code == 2 and "no such baseline" in err


def test_diff_matches_renamed_layers_by_structure(run_cli, project, tmp_path):
    model = deeplabv3lite(**SMALL)
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    for index, node in enumerate(renamed.graph.node):
        node.name = f"n{index}"
    renamed.graph.node[-2].name = "n_classifier"
    onnx.save_model(renamed, tmp_path / "renamed.onnx")
    code, out, _ = run_cli("diff", "models/lite.onnx", str(tmp_path / "renamed.onnx"), "--format", "json")
    assert code == 0
    result = json.loads(out)
    assert result["totals_a"]["macs"] == result["totals_b"]["macs"]
    assert result["changes"] == []  # every layer matched (by structure), nothing changed
    wider = deeplabv3lite(**{**SMALL, "num_classes": 8})
    onnx.save_model(wider, tmp_path / "wider.onnx")
    code, out, _ = run_cli("diff", "models/lite.onnx", str(tmp_path / "wider.onnx"), "--format", "json")
    changes = json.loads(out)["changes"]
    assert [change["name_a"] for change in changes] == ["head.classifier"]
    assert changes[0]["macs_delta"] > 0
