"""A sweep's latency points price the graph the target's runtime runs, as `segcost cost` does."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from segcost.sweep import read_table

REPO = Path(__file__).resolve().parents[2]


def padded_conv(num_classes: int = 4, **keywords):
    """A zero Pad (ZeroPad2d, exported as a Pad node) before an unpadded 3×3 Conv."""
    from torch import nn

    return nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, num_classes, 3)).eval()


def conv_with_pads(num_classes: int = 4, **keywords):
    """The same arithmetic as padded_conv, the padding written in the Conv."""
    from torch import nn

    return nn.Conv2d(3, num_classes, 3, padding=1).eval()


@pytest.mark.torch
def test_cpu_latency_points_fold_pads_as_onnxruntime_does(run_cli, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(REPO)   # the sweep's search path for the factories' module
    module = "tests.sweep.test_sweep_runtime_view"
    spec = tmp_path / "sweep.toml"
    spec.write_text(textwrap.dedent(f"""
        measures = ["macs", "latency"]
        [axes]
        models = [{{ model = "{module}:padded_conv" }}, {{ model = "{module}:conv_with_pads" }}]
        input_sizes = ["32"]
        num_classes = [4]
        targets = ["cpu", "tda4vm"]
        """))
    output = tmp_path / "res.csv"
    code, _, err = run_cli("sweep", str(spec), "-o", str(output), "--workers", "1", "-q", "--trust-model-code")
    assert code == 0, err
    rows = {(row["model"].rsplit(":", 1)[1], row["target"]): row for row in read_table(output)}
    assert all(row["status"] == "ok" for row in rows.values())
    assert rows["padded_conv", "cpu"]["macs"] == rows["conv_with_pads", "cpu"]["macs"]
    # onnxruntime folds the Pad into the Conv (passes.fuse_pad): the same latency on cpu ...
    assert rows["padded_conv", "cpu"]["latency_ms"] == rows["conv_with_pads", "cpu"]["latency_ms"]
    # ... while TIDL runs a Pad layer of its own, priced on tda4vm (the shared fused graph was not rewritten)
    assert rows["padded_conv", "tda4vm"]["latency_ms"] > rows["conv_with_pads", "tda4vm"]["latency_ms"]
