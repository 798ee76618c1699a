"""Xception-65 as TensorFlow DeepLab builds it (``research/deeplab/core/xception.py``).

Root: 3×3 stride-2 conv → 32, 3×3 conv → 64 (BN + ReLU each). Then Xception modules of
three separable convs (3×3 depthwise + BN, 1×1 pointwise + BN; the stride sits on the
third), with a 1×1 strided conv + BN shortcut ("conv"), an identity shortcut ("sum") or
none ("none"):

- entry flow: [128]×3 stride 2, [256]×3 stride 2, [728]×3 stride 2 (conv shortcuts);
- middle flow: 16 modules [728]×3 with identity shortcuts;
- exit flow: [728, 1024, 1024] stride 2 (conv shortcut), [1536, 1536, 2048] without
  shortcut and with ReLU inside the separable convs instead of before them.

In every other module a ReLU precedes each separable conv. Once the output stride is
reached, strides become 1 and later convs are dilated (``stack_blocks_dense``). The
DeepLab decoder taps the stride-4 feature ``entry_flow/block2/.../separable_conv2_pointwise``
(256 channels, after BN). All convs are bias-free with BatchNorm.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

# (depths of the three separable convs, shortcut type, stride, ReLU inside the separable convs)
XCEPTION65_MODULES = (
    ((128, 128, 128), "conv", 2, False),
    ((256, 256, 256), "conv", 2, False),
    ((728, 728, 728), "conv", 2, False),
    *(((728, 728, 728), "sum", 1, False),) * 16,
    ((728, 1024, 1024), "conv", 2, False),
    ((1536, 1536, 2048), "none", 1, True),
)
LOW_LEVEL_MODULE_INDEX = 1  # entry_flow/block2: its second separable conv is the stride-4 end point


class SeparableConv(nn.Module):
    """[ReLU] → k×k depthwise + BN [+ ReLU] → 1×1 pointwise + BN [+ ReLU].

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: depthwise stride.
        dilation: depthwise dilation.
        activation_inside: ReLU after each BN (exit flow's last module) instead of one ReLU before.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dilation: int,
                 activation_inside: bool) -> None:
        super().__init__()
        inner_activation = nn.ReLU if activation_inside else None
        self.pre_activation = nn.Identity() if activation_inside else nn.ReLU()
        self.depthwise = Conv2dNormActivation(in_channels, in_channels, 3, stride=stride, dilation=dilation,
                                              groups=in_channels, activation_layer=inner_activation)
        self.pointwise = Conv2dNormActivation(in_channels, out_channels, 1, activation_layer=inner_activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(self.pre_activation(x)))


class XceptionModule(nn.Module):
    """Three separable convs (stride on the third) plus a "conv", "sum" or "none" shortcut.

    Args:
        in_channels: input channels.
        depths: output channels of the three separable convs.
        shortcut: "conv" (1×1 strided conv + BN), "sum" (identity) or "none".
        stride: stride of the third separable conv (and of the shortcut conv).
        dilation: dilation of the three depthwise convs.
        activation_inside: see `SeparableConv`.
    """

    def __init__(self, in_channels: int, depths: tuple[int, int, int], shortcut: str, stride: int, dilation: int,
                 activation_inside: bool) -> None:
        super().__init__()
        convs, channels = [], in_channels
        for index, depth in enumerate(depths):
            convs.append(SeparableConv(channels, depth, stride if index == 2 else 1, dilation, activation_inside))
            channels = depth
        self.separable_convs = nn.ModuleList(convs)
        self.shortcut_type = shortcut
        self.shortcut = (Conv2dNormActivation(in_channels, depths[-1], 1, stride=stride, activation_layer=None)
                         if shortcut == "conv" else None)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (module output, output of the second separable conv)."""
        y = self.separable_convs[0](x)
        second = self.separable_convs[1](y)
        y = self.separable_convs[2](second)
        if self.shortcut is not None:  # shortcut_type == "conv"
            y = y + self.shortcut(x)
        elif self.shortcut_type == "sum":
            y = y + x
        return y, second


class Xception65(nn.Module):
    """DeepLab's Xception-65 feature extractor.

    Args:
        output_stride: 8 or 16 (32 without dilation).

    Attributes:
        out_channels: channels of the final features (2048).
        low_level_channels: channels of the stride-4 decoder end point (256).
    """

    def __init__(self, output_stride: int = 16) -> None:
        super().__init__()
        self.root = nn.Sequential(
            Conv2dNormActivation(3, 32, 3, stride=2, activation_layer=nn.ReLU),
            Conv2dNormActivation(32, 64, 3, activation_layer=nn.ReLU),
        )
        modules, channels, current_stride, rate = [], 64, 2, 1
        for depths, shortcut, stride, activation_inside in XCEPTION65_MODULES:
            if current_stride == output_stride:
                modules.append(XceptionModule(channels, depths, shortcut, 1, rate, activation_inside))
                rate *= stride
            else:
                modules.append(XceptionModule(channels, depths, shortcut, stride, 1, activation_inside))
                current_stride *= stride
            channels = depths[-1]
        self.modules_list = nn.ModuleList(modules)
        self.out_channels = channels
        self.low_level_channels = XCEPTION65_MODULES[LOW_LEVEL_MODULE_INDEX][0][1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (stride-`output_stride` features, stride-4 low-level features)."""
        x = self.root(x)
        low_level = x
        for index, module in enumerate(self.modules_list):
            x, second = module(x)
            if index == LOW_LEVEL_MODULE_INDEX:
                low_level = second
        return x, low_level
