"""Options a command would silently ignore are errors (segcost.commands.options.OptionNeedsCommand)."""

from __future__ import annotations

import click
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


@pytest.fixture
def conv_model(tmp_path):
    """x[1,3,8,8] -> Conv 3x3 (4 channels) -> Relu -> y."""
    weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("option", [["--max-drop", "0"], ["--pow2-scales"], ["--target", "tda4vm"],
                                    ["--target", "cpu"], ["--exclude-nodes", "conv"], ["--calib-size", "3"],
                                    ["--measure", "3"], ["--per-tensor"], ["--method", "entropy"],
                                    ["--calib", "synthetic"], ["--eval", "synthetic"], ["--eval-size", "2"],
                                    ["--mixed"]])
def test_optimize_int8_options_need_int8(run_cli, conv_model, tmp_path, option):
    output = tmp_path / "out.onnx"
    code, out, err = run_cli("optimize", str(conv_model), *option, "-o", str(output))
    assert code == 2 and out == "" and err.startswith("segcost: error: --") and err.count("\n") == 1, err
    assert option[0] in err and err.endswith(" needs --int8\n") and not output.exists()


def test_optimize_defaults_and_satisfied_needs_pass(run_cli, conv_model, tmp_path):
    """Defaults never count as given; --min-sqnr needs --mixed, which needs --int8 (every problem in one line)."""
    assert run_cli("optimize", str(conv_model), "-o", str(tmp_path / "a.onnx"))[0] == 0
    code, _, err = run_cli("optimize", str(conv_model), "--min-sqnr", "20", "--max-drop", "1",
                           "-o", str(tmp_path / "b.onnx"))
    assert code == 2 and err == "segcost: error: --max-drop needs --int8; --min-sqnr needs --mixed\n", err


@pytest.mark.parametrize("args, message", [
    (["analyze", "{model}", "--multiple", "16"], "--multiple needs --symbolic"),
    (["analyze", "{model}", "--top", "3", "--format", "json"],
     "--top needs --format table or --format md or --format html"),
    (["analyze", "{model}", "--top", "3", "--format", "csv"],
     "--top needs --format table or --format md or --format html"),
    (["analyze", "{model}", "--symbolic", "--factory-arg", "weights=None"],
     "--factory-arg does not combine with --symbolic"),
    (["analyze", "{model}", "--symbolic", "--top", "3"], "--top does not combine with --symbolic"),
    (["analyze", "{model}", "--by-op", "--group-by", "kind"], "--by-op does not combine with --group-by"),
    (["check", "{model}", "--max-gmacs", "1", "--rules", "legacy"], "--rules needs --verify"),
    (["check", "{model}", "--max-gmacs", "1", "--target", "tda4vm"],
     "--target is used by latency budgets only: give --max-latency-ms (or max_latency_ms in the budgets file)"),
    (["cost", "{model}", "--top", "3", "--format", "json"], "--top needs --format table or --format md"),
    (["calibrate", "--reference", "{tmp}/times.csv", "--runs", "3", "-o", "{tmp}/p.toml"],
     "--runs does not combine with --reference"),
    (["calibrate", "{model}", "--models-dir", "{tmp}", "-o", "{tmp}/p.toml"], "--models-dir needs --reference"),
    (["zoo", "export", "x", "-o", "{tmp}/p.toml", "--exporter", "dynamo", "--keep-batchnorm"],
     "--keep-batchnorm needs --exporter legacy"),
    (["sweep", "{tmp}/spec.toml", "--address", "auto"], "--address needs --backend ray"),
    (["sweep", "{tmp}/spec.toml", "--pareto-cost", "latency"], "--pareto-cost needs --pareto or --pareto-html"),
])
def test_other_commands_refuse_options_they_would_ignore(run_cli, conv_model, tmp_path, args, message):
    args = [arg.format(model=conv_model, tmp=tmp_path) for arg in args]
    code, out, err = run_cli(*args)
    assert code == 2 and out == "" and err == f"segcost: error: {message}\n", err
    assert not (tmp_path / "p.toml").exists()


def test_check_rules_with_verify_and_analyze_top_in_a_table_still_work(run_cli, conv_model):
    assert run_cli("check", str(conv_model), "--max-gmacs", "1", "--verify", "--rules", "legacy")[0] == 0
    code, out, _ = run_cli("analyze", str(conv_model), "--top", "1")
    assert code == 0 and "conv" in out and "relu" not in out.split("(top")[0].split("\n", 3)[-1]


def test_a_needs_table_naming_an_unknown_option_fails_when_the_command_is_built():
    from segcost.commands.options import OptionNeedsCommand

    with pytest.raises(ValueError, match="--no-such"):
        click.command(cls=OptionNeedsCommand, needs={"--flag": "--no-such"})(
            click.option("--flag", is_flag=True)(lambda flag: None))


@pytest.mark.parametrize("value", ["0", "0.0"])
def test_a_zero_given_to_a_required_option_counts_as_given(value):
    """0 is a value the user gave: it meets "needs --level" and breaks "no --level" (0 == False in Python)."""
    from click.testing import CliRunner

    from segcost.commands.options import OptionNeedsCommand

    @click.command(cls=OptionNeedsCommand, needs={"--uses": "--level", "--other": "no --level"})
    @click.option("--level", type=float)
    @click.option("--uses", is_flag=True)
    @click.option("--other", is_flag=True)
    def command(level, uses, other):
        click.echo("ran")

    result = CliRunner().invoke(command, ["--level", value, "--uses"])
    assert result.exit_code == 0 and result.output == "ran\n", (result.output, result.exception)
    result = CliRunner().invoke(command, ["--level", value, "--other"])
    assert result.exit_code != 0 and "ran" not in result.output
    assert "--other does not combine with --level" in str(result.exception) + result.output
