"""`segcost cost`, `segcost profile`, `segcost calibrate` end to end (small models, few runs)."""

from __future__ import annotations

import json
import re

import onnx

from segcost.targets.profile_toml import load_profile
from tests.targets.models import conv_chain


def _save(model, path) -> str:
    onnx.save(model, path)
    return str(path)


def test_cost_table_ranks_layers_and_shows_totals(run_cli):
    code, out, err = run_cli("cost", "--input-shape", "1x3x384x768", "--top", "3")
    assert code == 0, err
    assert "on tda4vm" in out and "latency" in out and "FPS" in out and "MAC utilisation" in out
    assert "Share of latency by kind and by op type" in out and "depthwise" in out
    ranking = out.split("Layers that dominate latency")[1]
    assert len([line for line in ranking.splitlines() if line[:1].isdigit()]) == 3


def test_cost_json_and_markdown(run_cli, tmp_path):
    model = _save(conv_chain(middle="softplus"), tmp_path / "softplus.onnx")
    code, out, _ = run_cli("cost", model, "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["profile"] == "tda4vm"
    assert len([item for item in document["transfers"] if "arm" in item["direction"]]) == 2
    assert {layer["placement"] for layer in document["layers"]} == {"accelerator", "arm"}
    code, out, _ = run_cli("cost", model, "--format", "md", "--target", "am62a")
    assert code == 0 and "## Fallback boundaries" in out and "| softplus" in out


def test_cost_shows_fallback_and_transfer_cost(run_cli, tmp_path):
    # no rule set has 9x9
    model = _save(conv_chain(middle="depthwise", dw_kernel=9, dw_stride=1), tmp_path / "dw9.onnx")
    code, out, _ = run_cli("cost", model)
    assert code == 0
    assert "Fallback boundaries" in out and "accelerator->arm" in out and "arm->accelerator" in out
    assert "fallback to arm: dw-kernel-stride" in out


def test_cost_with_a_profile_file_and_bad_targets(run_cli, tmp_path):
    from segcost.targets.profile_toml import profile_to_toml

    custom = load_profile("tda4vm").with_values(name="half", macs_per_cycle=2048)
    path = tmp_path / "half.toml"
    path.write_text(profile_to_toml(custom))
    code, out, _ = run_cli("cost", "--target", str(path), "--format", "json")
    assert code == 0 and json.loads(out)["peak_macs_per_s"] == 2048e9
    code, _, err = run_cli("cost", "--target", "tda5")
    assert code == 2 and "unknown target 'tda5'" in err and len(err.strip().splitlines()) == 1
    path.write_text(re.sub(r"^macs_per_cycle = 2048(\.0)?", "macs_per_cycle = 0", profile_to_toml(custom), flags=re.M))
    code, _, err = run_cli("cost", "--target", str(path))
    assert code == 2 and "macs_per_cycle must be a positive number" in err


def test_profile_prints_measured_against_predicted(run_cli, tmp_path):
    model = _save(conv_chain(channels=32, size=32), tmp_path / "chain.onnx")
    code, out, err = run_cli("profile", model, "--runs", "2", "--warmup", "1")
    assert code == 0, err
    assert "predicted ms" in out and "measured ms" in out and "Spearman rho" in out and "wall median" in out
    code, out, _ = run_cli("profile", model, "--runs", "2", "--warmup", "1", "--format", "json")
    document = json.loads(out)
    assert document["profile"] == "cpu" and document["runs"] == 2 and document["groups"]


def test_calibrate_writes_a_profile_that_loads(run_cli, tmp_path):
    models = [_save(conv_chain(channels=32, size=size, middle="depthwise"), tmp_path / f"m{size}.onnx")
              for size in (16, 32)]
    output = tmp_path / "cpu.toml"
    code, out, err = run_cli("calibrate", *models, "-o", str(output), "--runs", "2")
    assert code == 0, err
    assert "wrote" in out and "efficiency.depthwise" in out
    profile = load_profile(str(output))
    assert profile.name == "cpu" and all(0 < value <= 1 for value in profile.efficiency.values())
    assert "calibrated" in output.read_text()
    code, _, err = run_cli("calibrate", models[0], "-o", str(tmp_path / "x.toml"), "--base", "tda4vm")
    assert code == 2 and "without a fallback device" in err


def test_verify_and_cost_agree_on_the_command_line(run_cli, tmp_path):
    """The divisor is computed from constants: both commands fold it first, so neither sends the Div to ARM."""
    import json

    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    half = numpy_helper.from_array(np.full((1, 4, 1, 1), 0.5, np.float32), "half")
    nodes = [helper.make_node("Add", ["half", "half"], ["one"], name="one"),
             helper.make_node("Div", ["x", "one"], ["y"], name="div")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              initializer=[half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = _save(model, tmp_path / "div.onnx")
    code, out, _ = run_cli("verify", path)
    assert code == 0 and "no findings" in out
    code, out, _ = run_cli("cost", path, "--format", "json")
    assert code == 0 and json.loads(out)["totals"]["fallback_layers"] == 0
    # as given: Div of a computed tensor (a finding under SDK 9.2; SDK 11.00 runs Div of two computed tensors)
    code, out, _ = run_cli("verify", path, "--no-fuse", "--rules", "legacy")
    assert code == 1 and "binary-nonconstant" in out
