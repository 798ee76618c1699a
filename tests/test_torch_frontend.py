"""PyTorch frontend: export options, module specs, TorchScript files, side-effect freedom."""

from __future__ import annotations

import json

import onnx
import pytest

torch = pytest.importorskip("torch")

from segcost.frontends.torch import export  # noqa: E402
from segcost.zoo.hook_count import hook_macs  # noqa: E402

pytestmark = pytest.mark.torch


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
                               torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1, groups=4), torch.nn.Upsample(scale_factor=2))


def test_export_keeps_batchnorm_on_request_and_leaves_the_module_alone(tmp_path):
    net = _net().train()
    keys = list(net.state_dict())
    folded = onnx.load(export(net, (1, 3, 16, 16), tmp_path / "a.onnx"))
    kept = onnx.load(export(net, (1, 3, 16, 16), tmp_path / "b.onnx", keep_batchnorm=True))
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    assert "BatchNormalization" in {n.op_type for n in kept.graph.node}
    assert net.training and all(module.training for module in net.modules())
    assert list(net.state_dict()) == keys


def test_module_spec_and_torchscript_file(run_cli, tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 1))\n")
    monkeypatch.chdir(tmp_path)
    expected = 32 * 32 * 8 * 27 + 32 * 32 * 4 * 8
    code, out, err = run_cli("analyze", "user_models:build", "--input-shape", "1x3x32x32", "--format", "json",
                             "--trust-model-code")
    assert code == 0, err
    assert json.loads(out)["totals"]["macs"] == expected
    scripted = torch.jit.script(_net().eval())
    scripted.save(str(tmp_path / "net.pt"))
    code, out, err = run_cli("analyze", "net.pt", "--input-shape", "1x3x16x16", "--format", "json",
                             "--trust-model-code")
    assert code == 0, err
    assert json.loads(out)["totals"]["macs"] == hook_macs(_net(), (1, 3, 16, 16))


def test_exported_program_pt2_file(run_cli, tmp_path):
    """A .pt2 ExportedProgram is exported as the program itself (it has no eval() to call)."""
    program = torch.export.export(_net().eval(), (torch.zeros(1, 3, 16, 16),))
    torch.export.save(program, str(tmp_path / "net.pt2"))
    code, out, err = run_cli("analyze", str(tmp_path / "net.pt2"), "--input-shape", "1x3x16x16", "--format", "json",
                             "--trust-model-code")
    assert code == 0, err
    assert json.loads(out)["totals"]["macs"] == hook_macs(_net(), (1, 3, 16, 16))


@pytest.mark.parametrize("spec,message", [("no_such_module:build", "cannot import"), ("missing.pt", "no such file"),
                                          ("user:", "expected package.module:factory")])
def test_bad_specs_exit_2(run_cli, spec, message):
    code, _, err = run_cli("analyze", spec, "--input-shape", "1x3x8x8", "--trust-model-code")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


class Twice(torch.nn.Module):
    """One conv module applied twice: MACs count twice, its parameters once."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(self.conv(x))


def test_hook_count_counts_a_module_called_twice_twice():
    assert hook_macs(Twice(), (1, 4, 8, 8)) == 2 * 64 * 4 * 4 * 9


def test_shared_module_in_onnx_counts_macs_twice_params_once(tmp_path):
    from segcost.analyzer import analyze
    from segcost.frontends.onnx import load

    result = analyze(load(export(Twice(), (1, 4, 8, 8), tmp_path / "twice.onnx")))
    assert result.totals.macs == 2 * 64 * 4 * 4 * 9
    assert result.totals.params == 4 * 4 * 9 + 4
