"""RegNetX encoders (400MF, 800MF, 1.6GF, 3.2GF) of the edgeai-torchvision FPNLite models.

Built from torchvision's RegNet building blocks (``SimpleStemIN``, ``AnyStage``,
``ResBottleneckBlock``: 1×1 → grouped 3×3 (stride) → 1×1, projection shortcut when the stride
or width changes, bottleneck multiplier 1, no squeeze-excitation) but with the stage widths of
the vendor's ``regnet.py`` (pycls' rounding). They agree with torchvision's own
``regnet_x_*`` parameters except for 400MF, whose last stage is 384 channels in pycls and the
vendor (the lateral channels of its FPN config) but 400 in torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torchvision.models.regnet import AnyStage, ResBottleneckBlock, SimpleStemIN

STEM_CHANNELS = 32


@dataclass(frozen=True)
class RegNetXConfig:
    """Stage widths (strides 4, 8, 16, 32), stage depths and group width of one RegNetX."""

    stage_widths: tuple[int, int, int, int]
    stage_depths: tuple[int, int, int, int]
    group_width: int


REGNETX_CONFIGS = {
    "400MF": RegNetXConfig((32, 64, 160, 384), (1, 2, 7, 12), 16),
    "800MF": RegNetXConfig((64, 128, 288, 672), (1, 3, 7, 5), 16),
    "1.6GF": RegNetXConfig((72, 168, 408, 912), (2, 4, 10, 2), 24),
    "3.2GF": RegNetXConfig((96, 192, 432, 1008), (2, 6, 15, 2), 48),
}


class RegNetXEncoder(nn.Module):
    """RegNetX feature extractor returning each stage's output, keyed by stride.

    Args:
        variant: "400MF", "800MF", "1.6GF" or "3.2GF".

    Attributes:
        channels: {stride: channels} for strides 2 (stem), 4, 8, 16, 32.
        group_size: the group width of the grouped 3×3 convs (16, 16, 24, 48), which the
            Lite decoders reuse for their own 3×3 convs.
    """

    def __init__(self, variant: str) -> None:
        super().__init__()
        if variant not in REGNETX_CONFIGS:
            raise ValueError(f"unknown RegNetX variant {variant!r}; known: {', '.join(REGNETX_CONFIGS)}")
        config = REGNETX_CONFIGS[variant]
        self.group_size = config.group_width
        self.stem = SimpleStemIN(3, STEM_CHANNELS, nn.BatchNorm2d, nn.ReLU)
        stages = []
        in_width = STEM_CHANNELS
        for index, (width, depth) in enumerate(zip(config.stage_widths, config.stage_depths), start=1):
            stages.append(AnyStage(in_width, width, 2, depth, ResBottleneckBlock, nn.BatchNorm2d, nn.ReLU,
                                   config.group_width, 1.0, None, stage_index=index))
            in_width = width
        self.stages = nn.ModuleList(stages)
        self.channels = {2: STEM_CHANNELS}
        self.channels.update({2 ** (index + 2): width for index, width in enumerate(config.stage_widths)})

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        """Returns {2: stem output, 4/8/16/32: stage outputs}."""
        x = self.stem(x)
        features = {2: x}
        for index, stage in enumerate(self.stages):
            x = stage(x)
            features[2 ** (index + 2)] = x
        return features
