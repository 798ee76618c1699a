"""The seed's torchvision segmentation rows, built from torchvision itself.

Every model is built untrained (``weights=None, weights_backbone=None``: nothing is
downloaded) and without the auxiliary FCN head (``aux_loss=False``), which the zoo's
numbers exclude; the wrapper returns only the ``"out"`` logits, already upsampled by
torchvision to the input resolution.

The COCOSeg21 rows publish no GMACs; their exact counts at 520×520 with 21 classes are
recorded in ``COMPUTED_MACS`` (checked by the tests). torchvision's own model table lists
2.09 / 10.45 / 178.72 "GFLOPS" for them: those are these MAC counts with the auxiliary
head included (2,086,219,688 — LR-ASPP has none —, 10,452,447,938 and 178,721,945,088),
so dropping it matters. The Cityscapes rows at 1040×520 reproduce the published 285.4 and
337.5 GMACs (exactly 285,451,545,600 and 337,461,887,488 MACs; the table rounds 285.45
and 337.46 to one decimal).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from segcost.zoo.registry import ZooModel

FAMILY = "torchvision"

# Exact Conv MACs (batch 1, 21 classes, no auxiliary head), keyed (model name, (height, width)).
COMPUTED_MACS = {
    ("LR-ASPP MobileNetV3-Large", (520, 520)): 2_086_219_688,
    ("DeepLabV3 MobileNetV3-Large", (520, 520)): 10_436_350_688,
    ("DeepLabV3 ResNet50", (520, 520)): 168_731_205_888,
    ("ResNet50+FCN", (520, 1040)): 285_451_545_600,
    ("ResNet50+DeepLabV3", (520, 1040)): 337_461_887_488,
}

# Every row reproduces its published value (or publishes none), so nothing to explain.
EXPECTED_DEVIATIONS: dict[tuple[str, str, str], str] = {}


@cache
def _output_only_class() -> type:
    """The wrapper module class, defined on first use so that listing the zoo needs no torch."""
    from torch import Tensor, nn

    class OutputOnly(nn.Module):
        """Runs a torchvision segmentation model and returns only its ``"out"`` logits.

        Args:
            model: a torchvision segmentation model whose forward returns a dict.
        """

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Tensor) -> Tensor:
            return self.model(x)["out"]

    return OutputOnly


@cache
def _builder(factory_name: str, has_aux_head: bool = True) -> Callable[[int], Any]:
    """A `ZooModel.build` function for a torchvision segmentation factory (one per factory).

    Args:
        factory_name: name in ``torchvision.models.segmentation`` (e.g. "fcn_resnet50").
        has_aux_head: whether the factory accepts ``aux_loss`` (LR-ASPP has no auxiliary
            head and rejects the argument).

    Returns:
        A function num_classes → module in eval mode whose forward returns the logits tensor.
    """

    def build(num_classes: int):
        from torchvision.models import segmentation

        options: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
        if has_aux_head:
            options["aux_loss"] = False
        model = getattr(segmentation, factory_name)(**options)
        return _output_only_class()(model).eval()

    return build


ZOO_MODELS = [
    ZooModel(name="LR-ASPP MobileNetV3-Large", family=FAMILY, build=_builder("lraspp_mobilenet_v3_large", False),
             input_size=(520, 520), notes="torchvision lraspp_mobilenet_v3_large"),
    ZooModel(name="DeepLabV3 MobileNetV3-Large", family=FAMILY, build=_builder("deeplabv3_mobilenet_v3_large"),
             input_size=(520, 520), notes="torchvision deeplabv3_mobilenet_v3_large, no auxiliary head"),
    ZooModel(name="DeepLabV3 ResNet50", family=FAMILY, build=_builder("deeplabv3_resnet50"),
             input_size=(520, 520), notes="torchvision deeplabv3_resnet50, no auxiliary head"),
    ZooModel(name="ResNet50+FCN", family=FAMILY, build=_builder("fcn_resnet50"),
             input_size=(520, 1040), notes="torchvision fcn_resnet50, no auxiliary head"),
    ZooModel(name="ResNet50+DeepLabV3", family=FAMILY, build=_builder("deeplabv3_resnet50"),
             input_size=(520, 1040), notes="torchvision deeplabv3_resnet50, no auxiliary head"),
]
