"""The seed's torchvision rows: FCN-ResNet50 285.45 G and DeepLabV3-ResNet50 337.46 G MACs.

Exported here with weights=None (no download) by both exporters and with a dynamic batch;
every variant must give the same exact integer.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
segmentation = pytest.importorskip("torchvision.models.segmentation")

pytestmark = [pytest.mark.torch, pytest.mark.slow]

# Exact Conv MACs at 1×3×520×1040 (the zoo prints 285.4 and 337.5; DESIGN gives 285.45/337.46).
EXPECTED = {"fcn_resnet50": 285_451_545_600, "deeplabv3_resnet50": 337_461_887_488}


class _OutOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def _export(name: str, path, dynamo: bool, dynamic_batch: bool = False):
    factory = getattr(segmentation, name)
    model = _OutOnly(factory(weights=None, weights_backbone=None, num_classes=21, aux_loss=False)).eval()
    example = torch.zeros(1, 3, 520, 1040)
    with torch.no_grad():
        if dynamo:
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=True,
                              input_names=["input"], output_names=["out"], verbose=False)
        else:
            axes = {"input": {0: "batch"}, "out": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["out"], dynamic_axes=axes)


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def exported(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    paths = {variant: directory / f"{variant}.onnx" for variant in ("legacy", "dynamo", "dynamic_batch")}
    _export(request.param, paths["legacy"], dynamo=False)
    _export(request.param, paths["dynamo"], dynamo=True)
    _export(request.param, paths["dynamic_batch"], dynamo=False, dynamic_batch=True)
    return request.param, paths


def _macs(run_cli, *args) -> int:
    code, out, err = run_cli("analyze", *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)["totals"]["macs"]


def test_legacy_export(run_cli, exported):
    name, paths = exported
    assert _macs(run_cli, str(paths["legacy"])) == EXPECTED[name]


def test_dynamo_export_with_external_data(run_cli, exported):
    name, paths = exported
    assert (paths["dynamo"].parent / "dynamo.onnx.data").exists()
    assert _macs(run_cli, str(paths["dynamo"])) == EXPECTED[name]


def test_dynamic_batch_export_with_input_shape(run_cli, exported):
    name, paths = exported
    code, _, err = run_cli("analyze", str(paths["dynamic_batch"]))
    assert code == 2 and "'batch'" in err
    assert _macs(run_cli, str(paths["dynamic_batch"]), "--input-shape", "input=1x3x520x1040") == EXPECTED[name]
    assert _macs(run_cli, str(paths["dynamic_batch"]), "--input-shape", "input=4x3x520x1040") == 4 * EXPECTED[name]


def test_resnet50_conv_gemm_convention_is_4_09_gmacs(run_cli, tmp_path):
    """USER-NEEDS 5: torchvision resnet50 at 1x3x224x224 counts 4.09 G conv+gemm MACs (within 0.5%)."""
    from torchvision.models import resnet50

    path = tmp_path / "resnet50.onnx"
    with torch.no_grad():
        torch.onnx.export(resnet50(weights=None).eval(), (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"])
    macs = _macs(run_cli, str(path))
    assert abs(macs - 4.09e9) <= 0.005 * 4.09e9
    code, out, _ = run_cli("analyze", str(path), "--count", "bias", "--format", "json")
    by_convention = json.loads(out)["macs_by_convention"]
    # the exporter folds BatchNorm into the convs, so every conv output element has a bias add
    assert by_convention["macs"] - macs == by_convention["subtotals"]["bias"] > 1000
