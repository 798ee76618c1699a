"""The edgeai-torchvision Lite segmentation models of the seed zoo, as PyTorch modules.

One `ZooModel` per distinct architecture of the seed table's "edgeai-torchvision" rows (the
"-QAT" rows are the same float architectures). Importing this package does not import torch:
the builders import the model code when called.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from segcost.zoo.registry import ZooModel

FAMILY = "edgeai-torchvision"

# Decoder (= ASPP) channels of FPNLite per RegNetX variant, from the vendor's FPN configs;
# each is a multiple of the encoder's group width (16, 16, 24, 48).
REGNETX_FPN_DECODER_CHANNELS = {"400MF": 256, "800MF": 256, "1.6GF": 264, "3.2GF": 288}


def build_mobilenetv2s16_deeplabv3lite(num_classes: int) -> Any:
    """MobileNetV2 (width 1.0, ReLU, output stride 16) + DeepLabV3Lite, in eval mode."""
    from segcost.zoo.edgeai.heads import DeepLabV3LiteDecoder, LiteSegmentationModel
    from segcost.zoo.edgeai.mobilenetv2 import MobileNetV2Encoder

    encoder = MobileNetV2Encoder(width_mult=1.0, last_stage_stride=1)
    return LiteSegmentationModel(encoder, DeepLabV3LiteDecoder(encoder.channels, num_classes)).eval()


def build_mobilenetv2_unetlite(num_classes: int) -> Any:
    """MobileNetV2 (width 1.0, ReLU, output stride 32) + UNetLite, in eval mode."""
    from segcost.zoo.edgeai.heads import LiteSegmentationModel, UNetLiteDecoder
    from segcost.zoo.edgeai.mobilenetv2 import MobileNetV2Encoder

    encoder = MobileNetV2Encoder(width_mult=1.0)
    return LiteSegmentationModel(encoder, UNetLiteDecoder(encoder.channels, num_classes)).eval()


def build_mobilenetv2_fpnlite(num_classes: int, width_mult: float = 1.0) -> Any:
    """MobileNetV2 (output stride 32) + FPNLite, in eval mode.

    Width 1.0 uses ReLU and 256 decoder channels; width 1.4 uses ReLU6 (encoder and decoder)
    and make_divisible_by8(256 × 1.4) = 360 decoder channels, as the vendor's
    ``fpn_aspp_mobilenetv2_1p4_tv_edgeailite``.
    """
    from torch import nn

    from segcost.zoo.edgeai.heads import FPNLiteDecoder, LiteSegmentationModel
    from segcost.zoo.edgeai.mobilenetv2 import MobileNetV2Encoder, make_divisible_by8

    activation = nn.ReLU6 if width_mult != 1.0 else nn.ReLU
    encoder = MobileNetV2Encoder(width_mult=width_mult, activation=activation)
    decoder = FPNLiteDecoder(encoder.channels, num_classes, decoder_channels=make_divisible_by8(256 * width_mult),
                             activation=activation)
    return LiteSegmentationModel(encoder, decoder).eval()


def build_regnetx_fpnlite(num_classes: int, variant: str) -> Any:
    """RegNetX `variant` + FPNLite with the encoder's group width in every decoder 3×3, in eval mode."""
    from segcost.zoo.edgeai.heads import FPNLiteDecoder, LiteSegmentationModel
    from segcost.zoo.edgeai.regnetx import RegNetXEncoder

    encoder = RegNetXEncoder(variant)
    decoder = FPNLiteDecoder(encoder.channels, num_classes, decoder_channels=REGNETX_FPN_DECODER_CHANNELS[variant],
                             group_size=encoder.group_size)
    return LiteSegmentationModel(encoder, decoder).eval()


def _regnetx_entry(variant: str, group_width: int, input_size: tuple[int, int], num_classes: int) -> ZooModel:
    return ZooModel(f"RegNetX{variant}+FPNLite", FAMILY, partial(build_regnetx_fpnlite, variant=variant),
                    input_size, num_classes, encoder_group=group_width)


ZOO_MODELS: list[ZooModel] = [
    ZooModel("MobileNetV2S16+DeepLabV3Lite", FAMILY, build_mobilenetv2s16_deeplabv3lite, (512, 512), 32,
             encoder_group="depthwise"),
    ZooModel("MobileNetV2+UNetLite", FAMILY, build_mobilenetv2_unetlite, (512, 512), 32, encoder_group="depthwise"),
    ZooModel("MobileNetV2+FPNLite", FAMILY, build_mobilenetv2_fpnlite, (512, 512), 32, encoder_group="depthwise"),
    ZooModel("MobileNetV2-1.4+FPNLite", FAMILY, partial(build_mobilenetv2_fpnlite, width_mult=1.4), (512, 512), 32,
             encoder_group="depthwise", notes="ReLU6 in encoder and decoder; 360 decoder channels"),
    _regnetx_entry("400MF", 16, (384, 384), 32),
    _regnetx_entry("800MF", 16, (512, 512), 32),
    _regnetx_entry("1.6GF", 24, (512, 1024), 19),
    _regnetx_entry("3.2GF", 48, (768, 1536), 19),
]

# Seed rows whose published GMACs differ by more than 1% from the exact Conv MAC count of
# these models (hook count == ONNX count; batch 1; ADE20K32 → 32 classes, COCOSeg21 → 21,
# Cityscapes → 19). Keys are the seed table's (dataset, model, input_size as WxH).
_ADE20K32_REASON = "{comparison}; computed {computed} (see the ADE20K32 note)"
# Said once under the table (segcost.zoo.table.deviation_notes), not in every ADE20K32 row.
DEVIATION_NOTES = {
    "ADE20K32": "the table's ADE20K32 rows are 1.7-3.3% above the Conv MAC count of the vendor's architecture, "
                "while the same architectures' COCOSeg21/Cityscapes rows reproduce within 0.2%. The vendor's "
                "ADE20K32 training log for DeepLabV3Lite logs 3,216,179,200 = segcost's count "
                "(docs/zoo-architecture-notes.md), so the difference is the table's.",
}
EXPECTED_DEVIATIONS: dict[tuple[str, str, str], str] = {
    ("ADE20K32", "MobileNetV2S16+DeepLabV3Lite", "512x512"): _ADE20K32_REASON.format(
        comparison="32 vs 21 classes adds exactly 11*304*128^2 = 54,788,096 to the COCOSeg21 count "
                   "3,161,391,104 (table 3.161)",
        computed="encoder 2,380,267,520 + ASPP 612,827,136 + shortcut 24->48 18,874,368 + prediction dw 304 "
                 "44,826,624 + pw 304->32 159,383,552 = 3,216,179,200 (3.2162 G vs 3.28, -1.95%)"),
    ("ADE20K32", "MobileNetV2+UNetLite", "512x512"): _ADE20K32_REASON.format(
        comparison="the COCOSeg21 row (21 classes, decoder min channels 42) is 2,009,219,072 (table 2.009); "
                   "at 32 classes the min channels are max(2*32, 32) = 64",
        computed="2,349,121,536 (2.3491 G vs 2.427, -3.21%)"),
    ("ADE20K32", "MobileNetV2+FPNLite", "512x512"): _ADE20K32_REASON.format(
        comparison="32 vs 21 classes adds exactly 11*256*128^2 = 46,137,344 to the COCOSeg21 count "
                   "3,357,097,984 (table 3.357)",
        computed="3,403,235,328 (3.4032 G vs 3.481, -2.23%)"),
    ("ADE20K32", "MobileNetV2-1.4+FPNLite", "512x512"): _ADE20K32_REASON.format(
        comparison="this architecture has no other row; the width-1.0 FPNLite rows reproduce",
        computed="6,535,827,456 (6.5358 G vs 6.646, -1.66%)"),
    ("ADE20K32", "RegNetX400MF+FPNLite", "384x384"): _ADE20K32_REASON.format(
        comparison="the Cityscapes 768x384 and 1536x768 rows of this architecture reproduce to +0.03%/-0.01%",
        computed="3,076,521,984 (3.0765 G vs 3.1526, -2.41%)"),
    ("ADE20K32", "RegNetX800MF+FPNLite", "512x512"): _ADE20K32_REASON.format(
        comparison="32 vs 21 classes adds exactly 11*256*128^2 = 46,137,344 to the COCOSeg21 count "
                   "7,864,320,000 (table 7.864)",
        computed="7,910,457,344 (7.9105 G vs 8.0683, -1.96%)"),
    ("Cityscapes", "MobileNetV2+FPNLite", "768x384"): (
        "every conv runs at a fixed stride, so MACs scale exactly with the pixel count: the table's own "
        "1536x768 row (15.07, reproduced: 15,069,192,192) implies 15.07/4 = 3.77 at 768x384, not 3.84. "
        "Computed: 15,069,192,192 / 4 = 3,767,298,048 (3.7673 G vs 3.84, -1.89%)"),
    ("Cityscapes", "MobileNetV2+FPNLite-QAT", "768x384"): (
        "same float architecture as the MobileNetV2+FPNLite 768x384 row, whose 3.84 is inconsistent with the "
        "table's own 1536x768 row (15.07/4 = 3.77). Computed: 3,767,298,048 (3.7673 G vs 3.84, -1.89%)"),
    ("Cityscapes", "RegNetX1.6GF+FPNLite", "1024x512"): (
        "the vendor's fpn_aspp_regnetx1p6gf config (stage widths 72/168/408/912, depths 2/4/10/2, group width "
        "24, decoder/ASPP 264 channels) gives encoder 16,738,615,296 (RegNetX-1.6GF's ~1.6 GMACs at 224^2 "
        "x 10.45) + FPNLite decoder 9,628,090,368 = 26,366,705,664 (26.367 G vs 24.29, +8.55%); the published "
        "value would leave 7.55 G for the decoder, and no nearby config gives it (depthwise decoder 21.94 G, "
        "256 ch group 16 24.49 G, 240 ch group 24 25.26 G). The same code reproduces RegNetX3.2GF 1536x768 "
        "(111.16, -0.002%), the vendor docs' RegNetX3.2GF 1024x512 (49.40; 49,403,265,024) and the 400MF/800MF "
        "rows, so the 1.6GF row is taken to be the table's error."),
}
