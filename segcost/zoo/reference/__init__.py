"""Models the seed table lists beside the zoo's own: TensorFlow DeepLab and two references.

Family "tensorflow-deeplab" — the TI table's TF DeepLab rows:

- "modified" VOC2012 rows (TI's graph edits of the TF model zoo's frozen graphs: input
  513→512, resize and average-pool sizes made powers of two; the architecture is unchanged):
  the frozen graphs run at output stride 8, MobileNetV2 without atrous branches or
  decoder, Xception-65 with rates 12/24/36 and the stride-4 decoder.
- "original" Cityscapes rows: the TF model zoo's checkpoints at their evaluation output
  stride (16 for MobileNetV2 and Xception-65, 32 for MobileNetV3-Large).

Family "reference" — ERFNet and SwiftNet-MobileNetV2 (not in the zoo).

One `ZooModel` per distinct architecture; importing this package does not import torch.
`COMPUTED_MACS` holds the exact Conv/ConvTranspose MACs (batch 1) of every seed row, and
`EXPECTED_DEVIATIONS` explains every row whose published value differs by more than 1%.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from segcost.zoo.registry import ZooModel

TF_FAMILY = "tensorflow-deeplab"
REFERENCE_FAMILY = "reference"


def build_deeplabv3_mobilenetv2(num_classes: int, depth_multiplier: float = 1.0, output_stride: int = 8) -> Any:
    """TF DeepLab MobileNetV2 (ASPP without atrous branches, no decoder), in eval mode."""
    from segcost.zoo.reference.tf_deeplab import DeepLabV3MobileNetV2

    return DeepLabV3MobileNetV2(num_classes, depth_multiplier, output_stride).eval()


def build_deeplabv3plus_xception65(num_classes: int, output_stride: int = 16) -> Any:
    """TF DeepLab Xception-65 with ASPP and the stride-4 decoder, in eval mode."""
    from segcost.zoo.reference.tf_deeplab import DeepLabV3PlusXception65

    return DeepLabV3PlusXception65(num_classes, output_stride).eval()


def build_deeplab_mobilenetv3(num_classes: int) -> Any:
    """TF DeepLab MobileNetV3-Large (seg) Cityscapes model, in eval mode."""
    from segcost.zoo.reference.tf_deeplab import DeepLabMobileNetV3

    return DeepLabMobileNetV3(num_classes).eval()


def build_erfnet(num_classes: int) -> Any:
    """ERFNet, in eval mode."""
    from segcost.zoo.reference.erfnet import ERFNet

    return ERFNet(num_classes).eval()


def build_swiftnet_mobilenetv2(num_classes: int) -> Any:
    """Single-scale SwiftNet on MobileNetV2, in eval mode."""
    from segcost.zoo.reference.swiftnet import SwiftNetMobileNetV2

    return SwiftNetMobileNetV2(num_classes).eval()


ZOO_MODELS = [
    ZooModel("deeplabv3_mnv2_dm05", TF_FAMILY,
             partial(build_deeplabv3_mobilenetv2, depth_multiplier=0.5, output_stride=8), (512, 512), 21,
             notes="MobileNetV2 depth multiplier 0.5, output stride 8 (TF frozen graph), ASPP without atrous branches"),
    ZooModel("deeplabv3_mnv2", TF_FAMILY, partial(build_deeplabv3_mobilenetv2, output_stride=8), (512, 512), 21,
             notes="MobileNetV2, output stride 8 (TF frozen graph), ASPP without atrous branches"),
    ZooModel("deeplabv3_xception", TF_FAMILY, partial(build_deeplabv3plus_xception65, output_stride=8),
             (512, 512), 21, notes="Xception-65, output stride 8 (TF frozen graph), ASPP 12/24/36, decoder"),
    ZooModel("MobileNetV2+DeepLab", TF_FAMILY, partial(build_deeplabv3_mobilenetv2, output_stride=16),
             (769, 769), 19, notes="MobileNetV2, output stride 16 (TF model zoo eval), ASPP without atrous branches"),
    ZooModel("MobileNetV3+DeepLab", TF_FAMILY, build_deeplab_mobilenetv3, (769, 769), 19,
             notes="mobilenet_v3_large_seg, output stride 32, SE image pooling, stride-8 sum decoder"),
    ZooModel("Xception65+DeepLab", TF_FAMILY, partial(build_deeplabv3plus_xception65, output_stride=16),
             (769, 769), 19, notes="Xception-65, output stride 16 (TF model zoo eval), ASPP 6/12/18, decoder"),
    ZooModel("ERFNet", REFERENCE_FAMILY, build_erfnet, (512, 1024), 19,
             notes="Romera et al.; the erfnet_pytorch architecture"),
    ZooModel("MobileNetV2+SwiftNet", REFERENCE_FAMILY, build_swiftnet_mobilenetv2, (1024, 2048), 19,
             notes="Orsic et al.; the released SwiftNet decoder on torchvision's MobileNetV2 features"),
]

# Exact MACs of every seed row, keyed (dataset, model, input_size) as the seed table spells them.
COMPUTED_MACS = {
    ("VOC2012", "deeplabv3_mnv2_dm05", "512x512"): 2_735_284_224,
    ("VOC2012", "deeplabv3_mnv2", "512x512"): 8_564_916_224,
    ("VOC2012", "deeplabv3_xception", "512x512"): 171_594_088_448,
    ("Cityscapes", "MobileNetV2+DeepLab", "769x769"): 6_061_701_312,
    ("Cityscapes", "MobileNetV3+DeepLab", "769x769"): 2_162_679_008,
    ("Cityscapes", "Xception65+DeepLab", "769x769"): 119_476_303_728,
    ("Cityscapes", "ERFNet", "1024x512"): 26_604_339_200,
    ("Cityscapes", "MobileNetV2+SwiftNet", "2048x1024"): 39_244_122_112,
}

# The same architectures at the TF model zoo's Cityscapes evaluation crop, 1025×2049 (H×W).
CITYSCAPES_EVAL_CROP_MACS = {
    "MobileNetV2+DeepLab": 21_233_054_912,
    "MobileNetV3+DeepLab": 7_582_881_504,
    "Xception65+DeepLab": 418_375_681_136,
}



def _eval_crop_reason(model: str, published_gmacs: float) -> str:
    """Reason for a Cityscapes row whose published count is for the 1025×2049 evaluation crop."""
    eval_macs = CITYSCAPES_EVAL_CROP_MACS[model]
    delta_pct = 100 * (eval_macs / 1e9 - published_gmacs) / published_gmacs
    return (f"the TF model zoo measures Cityscapes models at the evaluation crop 1025x2049 (769x769 is the "
            f"training crop the TI table prints): at 1025x2049 the count is {eval_macs:,} ({delta_pct:+.2f}% vs "
            f"{published_gmacs}); at 769x769 it is {COMPUTED_MACS[('Cityscapes', model, '769x769')]:,}")


EXPECTED_DEVIATIONS = {
    ("VOC2012", "deeplabv3_mnv2_dm05", "512x512"): (
        "within 2%: 2,735,284,224 MACs (-1.25%). The shortfall (34.7 M) equals deeplabv3_mnv2's "
        "(8.60 G - 8,564,916,224 = 35.1 M): both share the 256-channel ASPP head, 64x64 logits and "
        "512x512 output, so ~35 M of both published numbers is output-stage work outside Conv MACs "
        "(not identified further)"),
    ("Cityscapes", "MobileNetV2+DeepLab", "769x769"): _eval_crop_reason("MobileNetV2+DeepLab", 21.27),
    ("Cityscapes", "Xception65+DeepLab", "769x769"): _eval_crop_reason("Xception65+DeepLab", 418.64),
    ("Cityscapes", "MobileNetV3+DeepLab", "769x769"): (
        "not reproduced. At 769x769 the count is 2,162,679,008; at the TF eval crop 1025x2049 with the "
        "model zoo's flags (output stride 32, 128 ASPP filters, SE image pooling, stride-8 sum decoder) it "
        "is 7,582,881,504 = 47.5% of 15.95 G. Two operations per MAC give 15.17 G (-4.9%): the published "
        "figure looks like TF-profiler float ops, not multiply-adds (adding bias, hard-swish and BatchNorm "
        "element ops, ~0.7 G, lands near 15.9 G), but the same rule gives 4.20 G for the sibling "
        "MobileNetV3-Small (published 4.63 G). Output stride 16 gives 9.55 G, 8 gives 27.46 G"),
    ("Cityscapes", "ERFNet", "1024x512"): (
        "not reproduced: 26,604,339,200 MACs (-3.97%) with ConvTranspose counted per input pixel "
        "(DESIGN). Tried: ConvTranspose per output pixel (TI's own counter) 29.80 G (+7.6%); plus bias, "
        "BatchNorm (2 per element), ReLU and max-pool element ops (ptflops style) 26.98 G (-2.6%); "
        "20 classes 26.61 G. No convention tried gives 27.705"),
    ("Cityscapes", "MobileNetV2+SwiftNet", "2048x1024"): (
        "not reproduced: 39,244,122,112 MACs (-4.3%); the release has only ResNet encoders. Tried: "
        "without MobileNetV2's final 1280-channel conv 38.15 G (-6.9%); lateral taps from the next "
        "blocks' expansion convs (144/192/576 channels) 41.34 G (+0.8%), which no source supports; "
        "ptflops-style extra element ops 40.20 G (-2.0%). The same decoder on ResNet-18 (the released "
        "SwiftNetRN-18) counts 103,566,133,248 vs the paper's 104.0 G (-0.4%)"),
}
