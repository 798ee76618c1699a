"""`segcost analyze --target` and latency budgets use the target cost model on the fused graph."""

from __future__ import annotations

import json

import onnx

from segcost.samples import deeplabv3lite


def test_analyze_target_json_and_table(run_cli, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(deeplabv3lite(width=0.35, num_classes=5, height=64, width_px=64), path)
    code, out, err = run_cli("analyze", str(path), "--target", "tda4vm", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["target"]["profile"] == "tda4vm" and document["target"]["totals"]["latency_ms"] > 0
    assert document["totals"]["macs"] == document["target"]["totals"]["macs"]
    code, out, _ = run_cli("analyze", str(path), "--target", "am62a", "--top", "3")
    assert code == 0 and "Layers that dominate latency" in out and "GMACs" in out
    code, out, _ = run_cli("analyze", str(path), "--target", "tda4vm", "--format", "html", "-o",
                           str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text()
    assert "Roofline" in html and html.count("<circle") > 10
    code, _, err = run_cli("analyze", str(path), "--target", "nosuchchip")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_latency_budget(run_cli, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(deeplabv3lite(width=0.35, num_classes=5, height=64, width_px=64), path)
    code, out, _ = run_cli("analyze", str(path), "--target", "tda4vm", "--format", "json")
    latency = json.loads(out)["target"]["totals"]["latency_ms"]
    code, out, _ = run_cli("check", str(path), "--target", "tda4vm", "--max-latency-ms", str(latency * 1.01))
    assert code == 0
    code, out, _ = run_cli("check", str(path), "--target", "tda4vm", "--max-latency-ms", str(latency * 0.99))
    assert code == 1 and "max_latency_ms" in out
