"""`segcost analyze` end to end: formats, totals, exit codes, outputs, start-up imports."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from segcost.samples import deeplabv3lite
from tests.conftest import single_op_model, weight


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "lite.onnx"
    onnx.save_model(deeplabv3lite(width=0.5, num_classes=8, height=128, width_px=256), path)
    return path


def test_default_model_runs_without_arguments(run_cli):
    code, out, err = run_cli("analyze")
    assert code == 0, err
    assert "built-in" in out and "GMACs" in out and "coverage:" in out


def test_json_schema_and_exact_totals(run_cli, model_path):
    code, out, _ = run_cli("analyze", str(model_path), "--format", "json")
    assert code == 0
    result = json.loads(out)
    assert result["schema"] == "segcost.analysis/1"
    totals = result["totals"]
    assert isinstance(totals["macs"], int) and totals["macs"] > 0
    assert totals["macs"] == sum(layer["macs"] for layer in result["layers"])
    assert totals["flops"] == sum(layer["flops"] for layer in result["layers"])
    assert totals["params"] == sum(layer["params"] for layer in result["layers"])
    assert totals["peak_activation_bytes"] <= totals["activation_bytes"]
    assert result["model"]["inputs"][0] == {"name": "input", "shape": [1, 3, 128, 256], "dtype": "float"}
    assert result["coverage"]["unsupported"] == [] and result["unknown_ops"] == {}
    conv = next(layer for layer in result["layers"] if layer["name"] == "encoder.block1.dw")
    assert conv["kind"] == "depthwise" and conv["stride"] == [2, 2] and conv["kernel"] == [3, 3]
    for key in ("name", "op_type", "kind", "group", "kernel", "stride", "inputs", "outputs", "output_shape",
                "macs", "flops", "params", "weight_bytes", "activation_bytes"):
        assert key in conv
    assert set(result["by_op_type"]) >= {"Conv", "BatchNormalization", "Relu", "Resize", "Concat"}
    assert sum(entry["macs"] for entry in result["by_op_type"].values()) == totals["macs"]


def test_json_is_byte_identical_between_runs(run_cli, model_path):
    assert run_cli("analyze", str(model_path), "--format", "json")[1] == \
        run_cli("analyze", str(model_path), "--format", "json")[1]


def test_csv_rows_sum_to_totals(run_cli, model_path):
    _, out, _ = run_cli("analyze", str(model_path), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    _, json_out, _ = run_cli("analyze", str(model_path), "--format", "json")
    totals = json.loads(json_out)["totals"]
    assert len(rows) == totals["nodes"]
    assert sum(int(row["macs"]) for row in rows) == totals["macs"]
    assert sum(int(row["params"]) for row in rows) == totals["params"]


def test_table_top_and_by_op(run_cli, model_path):
    _, out, _ = run_cli("analyze", str(model_path), "--top", "3")
    assert "(top 3 of" in out and "GMACs" in out
    _, out, _ = run_cli("analyze", str(model_path), "--by-op", "--format", "md")
    assert "| Conv" in out and "op type" in out


def test_output_file_is_written_atomically_and_input_protected(run_cli, model_path, tmp_path):
    target = tmp_path / "report.json"
    code, out, err = run_cli("analyze", str(model_path), "--format", "json", "-o", str(target))
    assert code == 0 and out == "" and json.loads(target.read_text())["totals"]["macs"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left
    before = model_path.read_bytes()
    code, _, err = run_cli("analyze", str(model_path), "-o", str(model_path))
    assert code == 2 and "refusing to overwrite" in err
    assert model_path.read_bytes() == before


def test_strict_names_unsupported_ops(run_cli, tmp_path):
    model = single_op_model("FancyOp", {"x": [1, 4]}, domain="com.example", y_shape=[1, 4])
    path = tmp_path / "custom.onnx"
    onnx.save_model(model, path)
    code, out, _ = run_cli("analyze", str(path), "--format", "json")
    assert code == 0 and json.loads(out)["unknown_ops"] == {"FancyOp": 1}
    code, _, err = run_cli("analyze", str(path), "--strict")
    assert code == 2 and "FancyOp:node" in err


def test_symbolic_input_needs_a_shape(run_cli, tmp_path):
    path = tmp_path / "dyn.onnx"
    onnx.save_model(single_op_model("Conv", {"x": ["N", 3, "H", "W"]}, {"w": weight(8, 3, 3, 3)}), path)
    code, _, err = run_cli("analyze", str(path))
    assert code == 2 and "'x'" in err and "'N'" in err and "--input-shape" in err
    code, out, _ = run_cli("analyze", str(path), "--input-shape", "x=2x3x10x10", "--format", "json")
    assert code == 0 and json.loads(out)["totals"]["macs"] == 2 * 8 * 8 * 8 * 3 * 9


def test_ops_lists_formulas(run_cli):
    code, out, _ = run_cli("ops")
    assert code == 0
    assert "Conv" in out and "MACs = N·C_out" in out and "ConvTranspose" in out


def test_help_texts(run_cli):
    code, out, _ = run_cli("analyze", "--help")
    assert code == 0 and "--input-shape" in out and "--strict" in out


def test_analyze_does_not_import_torch(model_path):
    completed = subprocess.run([sys.executable, "-X", "importtime", "-m", "segcost", "analyze", str(model_path)],
                               capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in completed.stderr.splitlines()
                if line.startswith("import time:")}
    assert "onnx" in imported  # the check itself works
    assert "torch" not in imported and "torchvision" not in imported


def test_streamed_json_equals_plain_dump():
    from segcost.analyzer import analyze
    from segcost.frontends.onnx import load_model
    from segcost.reports.analysis import render_json_chunks

    result = analyze(load_model(deeplabv3lite(width=0.35, num_classes=3, height=32, width_px=32)))
    assert json.loads("".join(render_json_chunks(result))) == result.to_dict()
    result.layers = []
    assert json.loads("".join(render_json_chunks(result))) == result.to_dict()


# One CLI grammar: usage errors, defaults and limits behave the same in every command.

@pytest.mark.parametrize("args, message", [
    (["analyze", "--no-such-option"], "analyze: No such option '--no-such-option'"),
    (["analyze", "--top", "0"], "analyze: Invalid value for '--top'"),
    (["analyze", "--format", "xml"], "analyze: Invalid value for '--format'"),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["baseline", "save", "--bogus"], "baseline save: No such option '--bogus'"),
    (["zoo", "export"], "zoo export: Missing argument 'NAME'"),
    (["check", "--max-gmacs", "nan"], "--max-gmacs must be a non-negative finite number"),
    (["check", "--max-params-m", "-1"], "--max-params-m must be a non-negative finite number"),
    (["check", "--max-gmacs", "5", "--max-increase", "2%"], "--max-increase needs --baseline"),
])
def test_usage_errors_are_one_line_exit_2(run_cli, args, message):
    code, out, err = run_cli(*args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("segcost: error: ") and message in err, err


def test_check_and_baseline_save_default_to_the_built_in_model(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check", "--max-gmacs", "100", "--input-shape", "1x3x256x256")
    assert code == 0, err
    assert "built-in" in out and "1x3x256x256" in out
    code, out, err = run_cli("baseline", "save", "-o", "base.json")
    assert code == 0, err
    (name,) = json.loads((tmp_path / "base.json").read_text())["models"]
    assert "built-in" in name
    code, out, err = run_cli("check", "--baseline", "base.json")
    assert code == 0 and "baseline_macs" in out, err


def test_github_annotations_use_repo_relative_paths_and_name_the_command_line(run_cli, tmp_path, monkeypatch):
    (tmp_path / "ci").mkdir()
    # a budgets file's models lie in its folder (budget.budgets refuses "../m.onnx")
    onnx.save_model(deeplabv3lite(width=0.35, num_classes=4, height=64, width_px=64), tmp_path / "ci" / "m.onnx")
    (tmp_path / "ci" / "segcost.toml").write_text('[[models]]\npath = "m.onnx"\nmax_params_m = 100\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    code, out, _ = run_cli("check", "--config", str(tmp_path / "ci" / "segcost.toml"), "--max-gmacs", "0.0001",
                           "--format", "github")
    assert code == 1
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["::notice"].startswith("file=ci/segcost.toml,")        # from the budgets file, repo-relative
    assert "file=" not in lines["::error"] and "--max-gmacs" in lines["::error"]   # from the command line


def test_title_shows_the_shape_analyzed(run_cli):
    code, out, _ = run_cli("analyze", "--input-shape", "1x3x256x512", "--top", "1")
    assert code == 0
    assert out.splitlines()[0].startswith("segcost analyze: MobileNetV2S16+DeepLabV3Lite (built-in, 21 classes, "
                                          "1x3x256x512)")


def test_analyze_target_top_limits_the_target_table_too(run_cli):
    code, out, _ = run_cli("analyze", "--target", "tda4vm", "--top", "3")
    assert code == 0
    target_part = out.split(" on tda4vm: ", 1)[1]
    table = target_part.split("\n\n", 2)[1]          # the per-layer target table
    assert len(table.splitlines()) == 2 + 3 + 1      # header, rule, 3 layers, "(the 3 slowest of ...)"
    assert "(the 3 slowest of" in table


@pytest.mark.torch
def test_state_dict_pth_says_to_use_a_factory(run_cli, tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Conv2d(3, 4, 1).state_dict(), tmp_path / "weights.pth")
    code, _, err = run_cli("analyze", str(tmp_path / "weights.pth"), "--input-shape", "1x3x8x8",
                           "--trust-model-code")
    assert code == 2 and err.count("\n") == 1
    assert "state_dict" in err and "package.module:factory" in err


@pytest.mark.torch
def test_factory_args_are_literals_and_export_shows_progress(run_cli, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    (tmp_path / "user_factory.py").write_text(
        "import torch\n"
        "def build(channels=8, weights='DEFAULT', kernel=(3, 3)):\n"
        "    assert weights is None, weights   # would download otherwise\n"
        "    return torch.nn.Conv2d(3, channels, kernel, padding=1, bias=False)\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("analyze", "user_factory:build", "--trust-model-code", "--input-shape", "1x3x8x8",
                             "--format", "json",
                             "--factory-arg", "channels=4", "--factory-arg", "weights=None",
                             "--factory-arg", "kernel=(3, 3)")
    assert code == 0, err
    assert json.loads(out)["totals"]["macs"] == 8 * 8 * 4 * 3 * 9
    assert "exporting user_factory:build" in err and "exported in" in err
    code, _, err = run_cli("analyze", "user_factory:build", "--trust-model-code", "--input-shape", "1x3x8x8",
                           "--factory-arg", "__import__('os').system('false')")
    assert code == 2 and "expected KEY=VALUE" in err


def test_factory_arg_values_are_never_evaluated():
    from segcost.frontends.torch import parse_factory_args

    assert parse_factory_args(["a=None", "b=21", "c=(1, 2)", "d='x'", "e=DEFAULT", "f=__import__('os')"]) == \
        {"a": None, "b": 21, "c": (1, 2), "d": "x", "e": "DEFAULT", "f": "__import__('os')"}


def test_third_party_advice_is_filtered(model_path, tmp_path):
    command = [sys.executable, "-m", "segcost", "optimize", str(model_path), "--int8", "--calib-size", "2",
               "-o", str(tmp_path / "q.onnx")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Please consider" not in done.stderr and "WARNING" not in done.stderr, done.stderr


# README "Real output" blocks are what the command prints today.

def _readme_outputs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    found = re.findall(r"Real output\s+\(`segcost ([^`]+)`[^)]*\):\n\n```[a-z]*\n(.*?)```", readme, re.DOTALL)
    assert found, "README has no 'Real output (`segcost ...`):' block"
    return [pytest.param(command, text, id=command.split()[0] + str(index),
                         marks=[pytest.mark.slow, pytest.mark.torch] if ":" in command.split()[1] else [])
            for index, (command, text) in enumerate(found)]


@pytest.mark.parametrize("command, expected", _readme_outputs())
def test_readme_real_output_is_current(run_cli, command, expected):
    if ":" in command.split()[1]:
        pytest.importorskip("torchvision")
    code, out, err = run_cli(*shlex.split(command))
    assert code == 0, err
    assert out == expected, "README block is stale: regenerate it with `segcost " + command + "`"


def _merged_lines(markdown: str) -> list[str]:
    """Lines GitHub would join to the line before them: plain text after plain text, a heading or a table row."""
    merged, previous = [], ""
    for line in markdown.splitlines():
        plain = bool(line.strip()) and not line.startswith(("#", "- ", "|", "```", "    "))
        if plain and previous and (previous.startswith(("#", "|")) or not previous.startswith(("- ", "```"))):
            merged.append(line)
        previous = line if line.strip() else ""
    return merged


@pytest.mark.parametrize("args", [["analyze", "--format", "md", "--top", "3"],
                                  ["analyze", "--format", "md", "--top", "3", "--target", "tda4vm"],
                                  ["analyze", "--format", "md", "--group-by", "prefix"],
                                  ["check", "--max-gmacs", "1", "--format", "md"]])
def test_markdown_reports_have_no_merged_paragraphs(run_cli, args):
    code, out, err = run_cli(*args)
    assert code in (0, 1), err
    assert _merged_lines(out) == []


def test_zoo_table_reasons_are_per_row_wrapped_in_the_table_and_whole_in_md_json():
    from segcost.reports.zoo import REASON_WIDTH, render_zoo_table
    from segcost.zoo.edgeai import EXPECTED_DEVIATIONS
    from segcost.zoo.table import SeedRow, TableRow, deviation_notes

    ade = {key: reason for key, reason in EXPECTED_DEVIATIONS.items() if key[0] == "ADE20K32"}
    notes = deviation_notes()
    assert len(ade) > 2 and "ADE20K32" in notes
    for reason in ade.values():   # the shared explanation is said once, in the note, not in every row
        assert notes["ADE20K32"][:60] not in reason and len(reason) < 400
    rows = [TableRow(SeedRow("edgeai-torchvision", dataset, model, size, 9.0, None, ""), 32, 8_800_000_000, reason)
            for (dataset, model, size), reason in ade.items()]
    table = render_zoo_table(rows, "table", notes)
    body = table.split("\n\n")[0]
    lines = body.splitlines()
    assert lines[1].rsplit("  ", 1)[1] == "-" * REASON_WIDTH   # the reason column is REASON_WIDTH wide...
    assert len(lines) > 2 + 2 * len(rows)                      # ...and each reason wraps onto several lines
    assert table.count("ADE20K32 note:") == 1
    markdown = render_zoo_table(rows, "md", notes)
    assert all(reason in markdown for reason in ade.values()) and markdown.count("ADE20K32 note:") == 1
    assert _merged_lines(markdown) == []
    records = json.loads(render_zoo_table(rows, "json", notes))
    assert [record["reason"] for record in records] == list(ade.values())
    assert all(record["note"] == notes["ADE20K32"] for record in records)
