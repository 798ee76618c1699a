"""TensorFlow DeepLab (tensorflow/models ``research/deeplab/model.py``) heads and models.

Defaults of ``common.py`` that the released checkpoints use: ASPP with BatchNorm, an
image-pooling branch, 256 filters, depthwise-separable atrous branches and decoder
convs; logits are a biased 1×1 conv. Per model (``g3doc/model_zoo.md``):

- MobileNetV2 models use no atrous branches and no decoder: image pooling + 1×1 branch,
  concat (512) → 1×1 projection → logits, at the backbone's output stride.
- Xception-65 models use atrous rates 6/12/18 at output stride 16 (12/24/36 at 8) and the
  DeepLabV3+ decoder: 1×1 → 48 on the stride-4 feature, concat with the upsampled ASPP
  output (304), two separable convs → 256, then logits at stride 4.
- The MobileNetV3 Cityscapes model uses output stride 32, 128 ASPP filters, no
  concat projection, and squeeze-excite image pooling (a 25×25 average pool — the 769×769
  training crop at stride 32 — with stride 4×5, a biased 1×1 conv and a sigmoid, which
  multiplies the 1×1 branch); its decoder at stride 8 adds a biased 1×1 conv of the
  upsampled ASPP output to a biased 1×1 projection (19 filters, no BN) of
  ``layer_7/depthwise_output``: the sum is the logits.

Every model's forward returns logits bilinearly resized (align_corners, as TF) to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from segcost.zoo.reference.tf_mobilenet import mobilenet_v2, mobilenet_v3_large_seg
from segcost.zoo.reference.tf_xception import Xception65

ASPP_FILTERS = 256
DECODER_PROJECTION_FILTERS = 48
# ASPP atrous rates at output stride 16 (doubled at 8), for the Xception models.
ATROUS_RATES_OS16 = (6, 12, 18)
# MobileNetV3 image pooling: kernel = (769 - 1) / 32 + 1 (crop 769×769 at stride 32), stride 4×5.
MOBILENET_V3_POOL_KERNEL = 25
MOBILENET_V3_POOL_STRIDE = (4, 5)
MOBILENET_V3_ASPP_FILTERS = 128
MOBILENET_V3_DECODER_END_POINT = 7  # layer_7/depthwise_output, stride 8, 120 channels
MOBILENET_V3_DECODER_END_POINT_CHANNELS = 120


def resize_like(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize with aligned corners, as TF DeepLab's ``_resize_bilinear``."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def separable_conv(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    """DeepLab's split_separable_conv2d: 3×3 depthwise + BN + ReLU, 1×1 pointwise + BN + ReLU."""
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, 3, dilation=dilation, groups=in_channels),
        Conv2dNormActivation(in_channels, out_channels, 1),
    )


class ASPP(nn.Module):
    """DeepLabV3 ASPP: image pooling, a 1×1 branch and separable atrous branches → 1×1 projection.

    Args:
        in_channels: backbone feature channels.
        atrous_rates: dilations of the separable 3×3 branches (empty for MobileNetV2).
        filters: output channels of every branch and of the projection.
    """

    def __init__(self, in_channels: int, atrous_rates: tuple[int, ...] = (), filters: int = ASPP_FILTERS) -> None:
        super().__init__()
        self.image_pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), Conv2dNormActivation(in_channels, filters, 1))
        self.branches = nn.ModuleList([Conv2dNormActivation(in_channels, filters, 1)])
        self.branches.extend(separable_conv(in_channels, filters, rate) for rate in atrous_rates)
        self.projection = Conv2dNormActivation(filters * (len(self.branches) + 1), filters, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = resize_like(self.image_pooling(x), x.shape[-2:])
        return self.projection(torch.cat([pooled, *(branch(x) for branch in self.branches)], dim=1))


class DeepLabV3MobileNetV2(nn.Module):
    """TF DeepLab "mobilenet_v2" model: MobileNetV2 + ASPP without atrous branches, no decoder.

    Args:
        num_classes: number of output classes.
        depth_multiplier: MobileNetV2 width (1.0 or 0.5).
        output_stride: 8 (the VOC frozen graphs) or 16.
    """

    def __init__(self, num_classes: int, depth_multiplier: float = 1.0, output_stride: int = 8) -> None:
        super().__init__()
        self.backbone = mobilenet_v2(depth_multiplier, output_stride)
        self.aspp = ASPP(self.backbone.out_channels)
        self.logits = nn.Conv2d(ASPP_FILTERS, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        features, _ = self.backbone(x)
        return resize_like(self.logits(self.aspp(features)), x.shape[-2:])


class DeepLabV3PlusXception65(nn.Module):
    """TF DeepLab "xception_65" model: Xception-65 + ASPP (6/12/18 at OS 16) + stride-4 decoder.

    Args:
        num_classes: number of output classes.
        output_stride: 16 (rates 6/12/18) or 8 (rates 12/24/36).
    """

    def __init__(self, num_classes: int, output_stride: int = 16) -> None:
        super().__init__()
        self.backbone = Xception65(output_stride)
        rates = tuple(rate * 16 // output_stride for rate in ATROUS_RATES_OS16)
        self.aspp = ASPP(self.backbone.out_channels, rates)
        self.feature_projection = Conv2dNormActivation(self.backbone.low_level_channels, DECODER_PROJECTION_FILTERS, 1)
        self.decoder = nn.Sequential(
            separable_conv(ASPP_FILTERS + DECODER_PROJECTION_FILTERS, ASPP_FILTERS),
            separable_conv(ASPP_FILTERS, ASPP_FILTERS),
        )
        self.logits = nn.Conv2d(ASPP_FILTERS, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        features, low_level = self.backbone(x)
        low_level = self.feature_projection(low_level)
        features = resize_like(self.aspp(features), low_level.shape[-2:])
        decoded = self.decoder(torch.cat([features, low_level], dim=1))
        return resize_like(self.logits(decoded), x.shape[-2:])


class SqueezeExcitePooling(nn.Module):
    """MobileNetV3 DeepLab's image branch: strided average pool → 1×1 (bias) → sigmoid → resize.

    Inputs whose stride-32 feature map is smaller than the 25×25 pool window (inputs
    below 769×769) pool over the whole map instead.

    Args:
        in_channels: backbone feature channels.
        filters: output channels.
    """

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        kernel = (min(MOBILENET_V3_POOL_KERNEL, height), min(MOBILENET_V3_POOL_KERNEL, width))
        pooled = F.avg_pool2d(x, kernel, stride=MOBILENET_V3_POOL_STRIDE)
        return resize_like(self.gate(self.conv(pooled)), (height, width))


class DeepLabMobileNetV3(nn.Module):
    """TF DeepLab "mobilenet_v3_large_seg" Cityscapes model (output stride 32, decoder at 8).

    Args:
        num_classes: number of output classes (the decoder's filters: the sum is the logits).
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = mobilenet_v3_large_seg(output_stride=32, end_point_layers=(MOBILENET_V3_DECODER_END_POINT,))
        channels = self.backbone.out_channels
        self.aspp_branch = Conv2dNormActivation(channels, MOBILENET_V3_ASPP_FILTERS, 1)
        self.image_gate = SqueezeExcitePooling(channels, MOBILENET_V3_ASPP_FILTERS)
        self.feature_projection = nn.Conv2d(MOBILENET_V3_DECODER_END_POINT_CHANNELS, num_classes, 1, bias=True)
        self.decoder_conv = nn.Conv2d(MOBILENET_V3_ASPP_FILTERS, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        features, end_points = self.backbone(x)
        aspp = self.aspp_branch(features) * self.image_gate(features)
        projected = self.feature_projection(end_points[MOBILENET_V3_DECODER_END_POINT])
        logits = self.decoder_conv(resize_like(aspp, projected.shape[-2:])) + projected
        return resize_like(logits, x.shape[-2:])
