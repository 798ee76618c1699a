"""The torchvision, TensorFlow-DeepLab and reference rows of the seed zoo.

Full-size MAC checks run `hook_macs` with every tensor on PyTorch's "meta" device: the
hooks see the real output shapes without computing anything, so a 418-GMAC model costs
well under a second. `test_onnx_export_matches_hooks` checks at a small input that the
meta count equals a real CPU forward, and that segcost's analyzer on the exported ONNX
agrees exactly.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from segcost.analyzer import analyze  # noqa: E402
from segcost.frontends import onnx as onnx_frontend  # noqa: E402
from segcost.frontends.torch import export  # noqa: E402
from segcost.zoo import hook_count, reference, tv  # noqa: E402
from segcost.zoo.hook_count import hook_macs  # noqa: E402

pytestmark = pytest.mark.torch

SEED_CSV = Path(hook_count.__file__).with_name("seed-zoo.csv")
FAMILIES = (tv.FAMILY, reference.TF_FAMILY, reference.REFERENCE_FAMILY)
CLASSES = {"VOC2012": 21, "Cityscapes": 19, "COCOSeg21": 21}
MODELS = {model.name: model for model in (*tv.ZOO_MODELS, *reference.ZOO_MODELS)}
# One name per distinct build function: "DeepLabV3 ResNet50" and "ResNet50+DeepLabV3" share one.
ARCHITECTURES = sorted({model.build: name for name, model in reversed(MODELS.items())}.values())
# Small enough for quick exports, large enough for every architecture (stride 32, ERFNet's /8).
SMALL_INPUT = (1, 3, 64, 64)
PUBLISHED_TOLERANCE_PCT = 2.0


def _seed_rows() -> list[dict[str, str]]:
    with SEED_CSV.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["family"] in FAMILIES]


SEED_ROWS = _seed_rows()


def _row_id(row: dict[str, str]) -> str:
    return f"{row['dataset']}-{row['model']}-{row['input_size']}"


def _height_width(input_size: str) -> tuple[int, int]:
    """Seed sizes are WxH; a single number is a square side."""
    width, _, height = input_size.partition("x")
    return int(height or width), int(width)


def meta_macs(name: str, num_classes: int, height: int, width: int) -> int:
    """hook_macs of a freshly built model at 1×3×height×width, on the meta device (shapes only)."""
    with torch.device("meta"):
        return hook_macs(MODELS[name].build(num_classes), (1, 3, height, width))


@functools.cache
def built(name: str):
    """The model built once per test session with its default classes, on the CPU."""
    return MODELS[name].build(MODELS[name].num_classes)


def test_seed_rows_and_models_correspond():
    assert len(SEED_ROWS) == 13
    for row in SEED_ROWS:
        assert row["model"] in MODELS, row
        assert MODELS[row["model"]].family == row["family"]
    assert {row["model"] for row in SEED_ROWS} == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_builds_in_eval_mode_with_logits_at_input_resolution(name):
    model = built(name)
    assert not model.training
    with torch.no_grad():
        logits = model(torch.zeros(SMALL_INPUT))
    assert tuple(logits.shape) == (1, MODELS[name].num_classes, *SMALL_INPUT[2:])


@pytest.mark.parametrize("row", SEED_ROWS, ids=_row_id)
def test_seed_row_macs(row):
    height, width = _height_width(row["input_size"])
    published = float(row["gmacs"]) if row["gmacs"] else None
    if row["family"] == tv.FAMILY:
        expected = tv.COMPUTED_MACS[(row["model"], (height, width))]
        macs = meta_macs(row["model"], MODELS[row["model"]].num_classes, height, width)
        reason = tv.EXPECTED_DEVIATIONS.get((row["dataset"], row["model"], row["input_size"]))
    else:
        key = (row["dataset"], row["model"], row["input_size"])
        expected = reference.COMPUTED_MACS[key]
        macs = meta_macs(row["model"], CLASSES[row["dataset"]], height, width)
        reason = reference.EXPECTED_DEVIATIONS.get(key)
    assert macs == expected
    if published is None:
        return
    delta_pct = 100 * (macs / 1e9 - published) / published
    if reason is None:
        assert abs(delta_pct) <= 1.0, f"{delta_pct:+.2f}% needs a reason in EXPECTED_DEVIATIONS"
    else:
        assert f"{macs:,}" in reason  # the reason states the exact count it explains
        if abs(delta_pct) <= PUBLISHED_TOLERANCE_PCT:
            assert reason.startswith("within 2%")


def test_torchvision_fcn_and_deeplabv3_match_the_published_rounding():
    """The zoo rounds the 2-decimal GMACs (285.45, 337.46) to one decimal: 285.4 and 337.5."""
    for name, published in (("ResNet50+FCN", 285.4), ("ResNet50+DeepLabV3", 337.5)):
        gmacs = tv.COMPUTED_MACS[(name, (520, 1040))] / 1e9
        assert round(round(gmacs, 2), 1) == published


@pytest.mark.parametrize("name", sorted(reference.CITYSCAPES_EVAL_CROP_MACS))
def test_cityscapes_counts_at_the_tf_evaluation_crop(name):
    macs = meta_macs(name, 19, 1025, 2049)
    assert macs == reference.CITYSCAPES_EVAL_CROP_MACS[name]
    reason = reference.EXPECTED_DEVIATIONS[("Cityscapes", name, "769x769")]
    assert f"{macs:,}" in reason


def test_tf_models_reproduce_the_model_zoo_at_513_output_stride_16():
    """TF's own VOC numbers (513×513, output stride 16, 21 classes): 0.88 G, 2.75 G and 54.17 G."""
    from segcost.zoo.reference import build_deeplabv3_mobilenetv2, build_deeplabv3plus_xception65

    published = {(0.5, "mnv2"): 0.88, (1.0, "mnv2"): 2.75, (1.0, "xception"): 54.17}
    for (multiplier, backbone), gmacs in published.items():
        with torch.device("meta"):
            model = (build_deeplabv3plus_xception65(21, output_stride=16) if backbone == "xception"
                     else build_deeplabv3_mobilenetv2(21, multiplier, output_stride=16))
            macs = hook_macs(model, (1, 3, 513, 513))
        assert abs(macs / 1e9 - gmacs) / gmacs <= PUBLISHED_TOLERANCE_PCT / 100, (multiplier, backbone, macs)


def test_tf_backbone_widths_follow_slim():
    from segcost.zoo.reference.tf_mobilenet import mobilenet_v2, mobilenet_v3_large_seg
    from segcost.zoo.reference.tf_xception import Xception65

    half = mobilenet_v2(depth_multiplier=0.5)  # channels rounded to multiples of 1, not 8
    assert half.stem[0].out_channels == 16
    assert sorted({block.project[0].out_channels for block in half.blocks}) == [8, 12, 16, 32, 48, 80, 160]
    assert half.out_channels == 160
    large = mobilenet_v3_large_seg()
    assert [block.depthwise[0].out_channels for block in large.blocks][-3:] == [336, 480, 480]
    assert large.out_channels == 480
    assert Xception65(16).low_level_channels == 256


def test_models_sharing_a_builder_differ_only_in_input_size():
    assert len(ARCHITECTURES) == len(MODELS) - 1
    assert MODELS["DeepLabV3 ResNet50"].build is MODELS["ResNet50+DeepLabV3"].build


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_onnx_export_matches_hooks(name, tmp_path):
    model = built(name)
    cpu_macs = hook_macs(model, SMALL_INPUT)
    assert meta_macs(name, MODELS[name].num_classes, *SMALL_INPUT[2:]) == cpu_macs
    path = export(model, SMALL_INPUT, tmp_path / "model.onnx")
    result = analyze(onnx_frontend.load(path))
    assert not result.coverage.unsupported
    assert result.totals.macs == cpu_macs > 0
