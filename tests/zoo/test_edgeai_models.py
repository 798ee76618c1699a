"""The edgeai-torchvision Lite models: shapes, exact MACs per seed row, ONNX agreement, Lite rule."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from segcost.analyzer import analyze  # noqa: E402
from segcost.frontends import onnx as onnx_frontend  # noqa: E402
from segcost.frontends.torch import export  # noqa: E402
from segcost.zoo import hook_count  # noqa: E402
from segcost.zoo.edgeai import EXPECTED_DEVIATIONS, FAMILY, ZOO_MODELS  # noqa: E402

pytestmark = pytest.mark.torch

SEED_CSV = Path(hook_count.__file__).with_name("seed-zoo.csv")
CLASSES = {"ADE20K32": 32, "COCOSeg21": 21, "Cityscapes": 19}
MODELS = {model.name: model for model in ZOO_MODELS}
# The group width of the RegNetX encoders (DESIGN.md); MobileNet encoders are depthwise.
ENCODER_GROUPS = {"RegNetX400MF+FPNLite": 16, "RegNetX800MF+FPNLite": 16, "RegNetX1.6GF+FPNLite": 24,
                  "RegNetX3.2GF+FPNLite": 48}

# Exact Conv MACs (batch 1) of every edgeai-torchvision seed row, keyed like EXPECTED_DEVIATIONS.
EXACT_MACS = {
    ("ADE20K32", "MobileNetV2S16+DeepLabV3Lite", "512x512"): 3_216_179_200,
    ("ADE20K32", "MobileNetV2+UNetLite", "512x512"): 2_349_121_536,
    ("ADE20K32", "MobileNetV2+FPNLite", "512x512"): 3_403_235_328,
    ("ADE20K32", "MobileNetV2-1.4+FPNLite", "512x512"): 6_535_827_456,
    ("ADE20K32", "RegNetX400MF+FPNLite", "384x384"): 3_076_521_984,
    ("ADE20K32", "RegNetX800MF+FPNLite", "512x512"): 7_910_457_344,
    ("COCOSeg21", "MobileNetV2S16+DeepLabV3Lite", "512x512"): 3_161_391_104,
    ("COCOSeg21", "MobileNetV2+UNetLite", "512x512"): 2_009_219_072,
    ("COCOSeg21", "MobileNetV2+FPNLite", "512x512"): 3_357_097_984,
    ("COCOSeg21", "RegNetX800MF+FPNLite", "512x512"): 7_864_320_000,
    ("Cityscapes", "MobileNetV2S16+DeepLabV3Lite", "768x384"): 3_545_358_336,
    ("Cityscapes", "MobileNetV2+UNetLite", "768x384"): 2_204_264_448,
    ("Cityscapes", "MobileNetV2+FPNLite", "768x384"): 3_767_298_048,
    ("Cityscapes", "MobileNetV2+FPNLite", "1536x768"): 15_069_192_192,
    ("Cityscapes", "MobileNetV2S16+DeepLabV3Lite-QAT", "768x384"): 3_545_358_336,
    ("Cityscapes", "MobileNetV2+UNetLite-QAT", "768x384"): 2_204_264_448,
    ("Cityscapes", "MobileNetV2+FPNLite-QAT", "768x384"): 3_767_298_048,
    ("Cityscapes", "RegNetX800MF+FPNLite", "768x384"): 8_837_922_816,
    ("Cityscapes", "RegNetX1.6GF+FPNLite", "1024x512"): 26_366_705_664,
    ("Cityscapes", "RegNetX3.2GF+FPNLite", "1536x768"): 111_157_346_304,
    ("Cityscapes", "RegNetX400MF+FPNLite", "768x384"): 6_091_702_272,
    ("Cityscapes", "RegNetX400MF+FPNLite", "1536x768"): 24_366_809_088,
}


def _seed_rows() -> list[dict[str, str]]:
    with SEED_CSV.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["family"] == FAMILY]


SEED_ROWS = _seed_rows()


def _key(row: dict[str, str]) -> tuple[str, str, str]:
    return row["dataset"], row["model"], row["input_size"]


def _height_width(input_size: str) -> tuple[int, int]:
    width, height = (int(value) for value in input_size.split("x"))  # the table writes WxH
    return height, width


@functools.cache
def _model(name: str, num_classes: int):
    return MODELS[name].build(num_classes)


@functools.cache
def _hook_macs(name: str, num_classes: int, height: int, width: int) -> int:
    """hook_macs of a full-size forward on the meta device: shapes only, no arithmetic, same count."""
    with torch.device("meta"):
        return hook_count.hook_macs(MODELS[name].build(num_classes), (1, 3, height, width))


def test_one_entry_per_seed_architecture():
    first_rows: dict[str, dict[str, str]] = {}
    for row in SEED_ROWS:
        first_rows.setdefault(row["model"].removesuffix("-QAT"), row)
    assert sorted(MODELS) == sorted(first_rows)
    assert len(MODELS) == len(ZOO_MODELS)
    for name, row in first_rows.items():
        model = MODELS[name]
        assert model.family == FAMILY
        assert model.input_size == _height_width(row["input_size"]), name
        assert model.num_classes == CLASSES[row["dataset"]], name
        assert model.encoder_group == ENCODER_GROUPS.get(name, "depthwise"), name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_gives_logits_at_input_resolution(name):
    num_classes = MODELS[name].num_classes
    model = _model(name, num_classes)
    assert not any(module.training for module in model.modules())
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 96))
    assert logits.shape == (1, num_classes, 64, 96)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("row", SEED_ROWS, ids=lambda row: "-".join(_key(row)))
def test_seed_row_macs(row):
    key = _key(row)
    height, width = _height_width(row["input_size"])
    macs = _hook_macs(row["model"].removesuffix("-QAT"), CLASSES[row["dataset"]], height, width)
    assert macs == EXACT_MACS[key]
    if key not in EXPECTED_DEVIATIONS:
        published = float(row["gmacs"]) * 1e9
        assert abs(macs - published) <= 0.02 * published, f"{macs:,} vs published {row['gmacs']} G"


def test_expected_deviations_are_exactly_the_rows_off_by_more_than_1_percent():
    assert set(EXACT_MACS) == {_key(row) for row in SEED_ROWS}
    off = {_key(row) for row in SEED_ROWS
           if abs(EXACT_MACS[_key(row)] - float(row["gmacs"]) * 1e9) > 0.01 * float(row["gmacs"]) * 1e9}
    assert set(EXPECTED_DEVIATIONS) == off
    for key, reason in EXPECTED_DEVIATIONS.items():
        assert f"{EXACT_MACS[key]:,}" in reason, key


def test_deeplabv3lite_matches_vendor_log_and_onnx_sample_block_by_block():
    from segcost.samples.deeplabv3lite import deeplabv3lite

    name = "MobileNetV2S16+DeepLabV3Lite"
    assert hook_count.hook_macs(_model(name, 32), (1, 3, 512, 512)) == 3_216_179_200  # a real CPU forward
    assert _hook_macs(name, 32, 512, 512) == 3_216_179_200  # on the meta device, as for the seed rows
    with torch.device("meta"):  # the notes' per-block table
        model = MODELS[name].build(32)
        assert hook_count.hook_macs(model.encoder, (1, 3, 512, 512)) == 2_380_267_520
        assert hook_count.hook_macs(model.decoder.aspp, (1, 320, 32, 32)) == 612_827_136
        assert hook_count.hook_macs(model.decoder.shortcut, (1, 24, 128, 128)) == 18_874_368
        assert hook_count.hook_macs(model.decoder.prediction, (1, 304, 128, 128)) == 44_826_624 + 159_383_552
    sample = onnx_frontend.load_model(deeplabv3lite(num_classes=32, height=512, width_px=512))
    assert analyze(sample).totals.macs == 3_216_179_200


EXPORTS = [(name, "legacy") for name in sorted(MODELS)] + [("MobileNetV2+FPNLite", "dynamo")]


@pytest.mark.parametrize(("name", "exporter"), EXPORTS)
def test_onnx_export_counts_the_same_macs(name, exporter, tmp_path):
    model = _model(name, MODELS[name].num_classes)
    shape = (1, 3, 64, 64)  # stride 32 → 2×2; small keeps the grouped convs cheap on CPU
    path = export(model, shape, tmp_path / "model.onnx", exporter=exporter)
    onnx_macs = analyze(onnx_frontend.load(path)).totals.macs
    assert onnx_macs == hook_count.hook_macs(model, shape) > 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_lite_rule_every_3x3_outside_the_encoder(name):
    zoo_model = MODELS[name]
    model = _model(name, zoo_model.num_classes)
    group = zoo_model.encoder_group

    def is_lite(conv) -> bool:
        if group == "depthwise":
            return conv.groups == conv.in_channels
        return conv.groups > 1 and conv.in_channels // conv.groups == group

    decoder_3x3 = {module_name: module for module_name, module in model.named_modules()
                   if isinstance(module, torch.nn.Conv2d) and not module_name.startswith("encoder.")
                   and module.kernel_size == (3, 3)}
    assert len(decoder_3x3) >= 4  # three ASPP branches and the prediction at least
    offenders = [module_name for module_name, conv in decoder_3x3.items() if not is_lite(conv)]
    assert not offenders, f"not Lite ({group}): {offenders}"
    # the group the rule propagates is really the encoder's: all its 3×3 convs but the stem follow it
    encoder_3x3 = [module for module in model.encoder.modules()
                   if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3) and module.in_channels > 3]
    assert encoder_3x3 and all(is_lite(conv) for conv in encoder_3x3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bias_free_convs_with_batchnorm_and_the_vendors_activation(name):
    model = _model(name, MODELS[name].num_classes)
    modules = list(model.modules())
    convs = [module for module in modules if isinstance(module, torch.nn.Conv2d)]
    assert all(conv.bias is None for conv in convs)
    # every conv but the final 1×1 classifier is followed by a BatchNorm2d
    assert sum(isinstance(module, torch.nn.BatchNorm2d) for module in modules) == len(convs) - 1
    activations = {type(module) for module in modules if isinstance(module, (torch.nn.ReLU, torch.nn.ReLU6))}
    assert activations == ({torch.nn.ReLU6} if name == "MobileNetV2-1.4+FPNLite" else {torch.nn.ReLU})
