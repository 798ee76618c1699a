"""SwiftNet with a MobileNetV2 encoder (Oršić et al., "In Defense of Pre-trained ImageNet
Architectures for Real-time Semantic Segmentation of Road-driving Images", CVPR 2019).

The authors' release (orsic/swiftnet) contains only the ResNet encoders; this module keeps
its decoder exactly and swaps the encoder, as the paper's "MobileNet V2" variant does:

- encoder: torchvision's MobileNetV2 ``features`` (width 1.0, ReLU6, including the final
  1×1 conv to 1280 channels, no classifier); lateral features are the outputs of the last
  block at strides 4, 8 and 16 (24, 32 and 96 channels), the analogue of the ResNet
  stage outputs the release taps;
- spatial pyramid pooling on the stride-32 features: BN-ReLU-1×1 conv → 128, three levels
  (adaptive average pools to grids 8, 4, 2 rows, the width following the aspect ratio)
  each BN-ReLU-1×1 → 42, upsampled and concatenated (254) → BN-ReLU-1×1 → 128;
- three upsampling modules (strides 16, 8, 4): BN-ReLU-1×1 "bottleneck" of the lateral
  feature → 128, bilinear ×2 of the coarser map, sum, BN-ReLU-3×3 "blend" conv → 128;
- logits: BN-ReLU-1×1 conv (with bias) → classes at stride 4, bilinearly upsampled to
  the input.

All decoder convs are bias-free except the logits, as in the release. The stride-32 map
must be divisible by the pyramid grids (e.g. 1024×2048 → 32×64); a map smaller than a grid
(inputs below 256 pixels) pools to its own size for that level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import mobilenet_v2

DECODER_CHANNELS = 128
PYRAMID_GRIDS = (8, 4, 2)
# MobileNetV2 `features` index after which a lateral feature is taken (strides 4, 8, 16).
LATERAL_FEATURE_INDICES = (3, 6, 13)
LATERAL_CHANNELS = (24, 32, 96)
ENCODER_CHANNELS = 1280


def upsample(x: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Bilinear resize (align_corners=False), as the release's ``upsample``."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class BNReluConv(nn.Sequential):
    """The release's pre-activation unit: BatchNorm → ReLU → k×k conv.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: 1 or 3.
        bias: conv bias (only the logits have one).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias),
        )


class SpatialPyramidPooling(nn.Module):
    """SwiftNet's SPP: a 1×1 bottleneck, pooled levels upsampled back, concatenated, fused.

    Args:
        in_channels: encoder channels.
        channels: bottleneck and output channels.
        grids: rows of each level's pooling grid (columns follow the aspect ratio).
    """

    def __init__(self, in_channels: int, channels: int = DECODER_CHANNELS,
                 grids: tuple[int, ...] = PYRAMID_GRIDS) -> None:
        super().__init__()
        level_channels = channels // len(grids)
        self.grids = grids
        self.bottleneck = BNReluConv(in_channels, channels, 1)
        self.levels = nn.ModuleList(BNReluConv(channels, level_channels, 1) for _ in grids)
        self.fuse = BNReluConv(channels + level_channels * len(grids), channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        x = self.bottleneck(x)
        levels = [x]
        for grid, level in zip(self.grids, self.levels):
            grid_size = (min(grid, height), min(max(1, round(width / height * grid)), width))
            pooled = F.adaptive_avg_pool2d(x, grid_size)
            levels.append(upsample(level(pooled), (height, width)))
        return self.fuse(torch.cat(levels, dim=1))


class UpsampleModule(nn.Module):
    """Bottleneck the lateral feature, add the upsampled coarser map, blend with a 3×3 conv.

    Args:
        lateral_channels: channels of the encoder's lateral feature.
        channels: decoder channels.
    """

    def __init__(self, lateral_channels: int, channels: int = DECODER_CHANNELS) -> None:
        super().__init__()
        self.bottleneck = BNReluConv(lateral_channels, channels, 1)
        self.blend = BNReluConv(channels, channels, 3)

    def forward(self, x: Tensor, lateral: Tensor) -> Tensor:
        lateral = self.bottleneck(lateral)
        return self.blend(upsample(x, lateral.shape[-2:]) + lateral)


class SwiftNetMobileNetV2(nn.Module):
    """Single-scale SwiftNet on a MobileNetV2 encoder; logits at the input resolution.

    Args:
        num_classes: number of output classes.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.encoder = mobilenet_v2(weights=None).features
        self.pyramid = SpatialPyramidPooling(ENCODER_CHANNELS)
        # Coarsest first: stride 16, 8, 4.
        self.upsampling = nn.ModuleList(UpsampleModule(channels) for channels in reversed(LATERAL_CHANNELS))
        self.logits = BNReluConv(DECODER_CHANNELS, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        laterals = []
        features = x
        for index, layer in enumerate(self.encoder):
            features = layer(features)
            if index in LATERAL_FEATURE_INDICES:
                laterals.append(features)
        decoded = self.pyramid(features)
        for module, lateral in zip(self.upsampling, reversed(laterals)):
            decoded = module(decoded, lateral)
        return upsample(self.logits(decoded), x.shape[-2:])

