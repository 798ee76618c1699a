"""`segcost optimize` and `segcost verify` end to end."""

from __future__ import annotations

import json

import onnx

from segcost.samples import deeplabv3lite
from tests.passes.test_verify_conv import _lite_model


def _save(model, path):
    onnx.save_model(model, path)
    return str(path)


def test_optimize_writes_a_valid_fused_model_and_report(run_cli, tmp_path):
    model_path = _save(deeplabv3lite(width=0.35, num_classes=5, height=64, width_px=96), tmp_path / "m.onnx")
    output, report = tmp_path / "out.onnx", tmp_path / "report.json"
    code, out, err = run_cli("optimize", model_path, "-o", str(output), "--report", str(report))
    assert code == 0, err
    optimized = onnx.load(output)
    onnx.checker.check_model(optimized, full_check=True)
    assert "BatchNormalization" not in {node.op_type for node in optimized.graph.node}
    payload = json.loads(report.read_text())
    assert payload["after"]["macs"] == payload["before"]["macs"]
    assert payload["after"]["nodes"] < payload["before"]["nodes"]
    assert payload["max_abs_diff"] <= 1e-4
    assert "fuse-conv-bn" in out and "onnxruntime check" in out
    # idempotent: optimizing the optimized model changes nothing
    again = tmp_path / "again.onnx"
    code, out, _ = run_cli("optimize", str(output), "-o", str(again), "--report", str(report))
    assert code == 0
    assert not any(record["modified"] for record in json.loads(report.read_text())["passes"])


def test_optimize_refuses_to_overwrite_input_and_unknown_pass(run_cli, tmp_path):
    model_path = _save(deeplabv3lite(width=0.35, num_classes=2, height=32, width_px=32), tmp_path / "m.onnx")
    before = open(model_path, "rb").read()
    code, _, err = run_cli("optimize", model_path, "-o", model_path)
    assert code == 2 and "refusing to overwrite" in err and open(model_path, "rb").read() == before
    code, _, err = run_cli("optimize", model_path, "--passes", "fuse-conv-bn,bogus")
    assert code == 2 and "unknown pass 'bogus'" in err


def test_verify_exit_codes(run_cli, tmp_path):
    clean = _save(deeplabv3lite(width=0.35, num_classes=2, height=64, width_px=64), tmp_path / "clean.onnx")
    code, out, _ = run_cli("verify", clean)
    assert code == 0 and "no findings" in out
    broken = _save(_lite_model(decoder_group=1), tmp_path / "broken.onnx")
    code, out, _ = run_cli("verify", broken, "--format", "json")
    assert code == 1
    assert json.loads(out)["findings"][0]["layer"] == "decoder.conv3x3"
