"""MobileNetV2 encoder as used by the edgeai-torchvision Lite segmentation models.

Differences from torchvision's classification MobileNetV2 (checked against TI's
edgeai-tensorvision ``mobilenetv2.py``): the activation is ReLU at width 1.0 (ReLU6 only in
the width-1.4 models), there is no final 1280-channel 1×1 conv (the vendor adds it only when
``num_classes`` is set, which the segmentation configs leave at None), and the stride of the
160-channel stage is configurable: 1 gives the output-stride-16 ("S16") encoder of
DeepLabV3Lite, without dilation.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

# (expansion t, output channels c, repeats n, stride s) of MobileNetV2 after the stem; the
# stride of the 160-channel stage is replaced by `last_stage_stride`.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32


def make_divisible_by8(value: float) -> int:
    """Round a width-scaled channel count to a multiple of 8, never more than 10% down.

    Same rule as the vendor's ``xnn.utils.make_divisible_by8`` (and torchvision's
    ``_make_divisible``): 1.4 × (16, 24, 32, 64, 96, 160, 320, 256) → (24, 32, 48, 88, 136,
    224, 448, 360).
    """
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand (skipped when t = 1), depthwise 3×3, linear 1×1 project.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the depthwise conv (1 or 2).
        expansion: hidden channels = round(in_channels × expansion).
        activation: activation class after the expand and depthwise convs.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int,
                 activation: type[nn.Module]) -> None:
        super().__init__()
        hidden_channels = int(round(in_channels * expansion))
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(Conv2dNormActivation(in_channels, hidden_channels, kernel_size=1,
                                               activation_layer=activation))
        layers.append(Conv2dNormActivation(hidden_channels, hidden_channels, kernel_size=3, stride=stride,
                                           groups=hidden_channels, activation_layer=activation))
        layers.append(Conv2dNormActivation(hidden_channels, out_channels, kernel_size=1, activation_layer=None))
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 feature extractor returning the last feature map at every stride.

    Args:
        width_mult: channel multiplier (1.0 or 1.4 in the zoo).
        last_stage_stride: stride of the 160-channel stage: 2 gives output stride 32,
            1 gives output stride 16 (the "S16" encoder).
        activation: activation class (nn.ReLU in the zoo's width-1.0 models, nn.ReLU6 at 1.4).

    Attributes:
        channels: {stride: channels of the feature returned for that stride}.
        group_size: None — the encoder's 3×3 convs are depthwise.
    """

    group_size = None

    def __init__(self, width_mult: float = 1.0, last_stage_stride: int = 2,
                 activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        channels = make_divisible_by8(STEM_CHANNELS * width_mult)
        stem = Conv2dNormActivation(3, channels, kernel_size=3, stride=2, activation_layer=activation)
        layers: list[nn.Module] = [stem]
        strides = [2]
        for expansion, base_channels, repeats, stride in INVERTED_RESIDUAL_SETTING:
            if base_channels == 160:
                stride = last_stage_stride
            out_channels = make_divisible_by8(base_channels * width_mult)
            for repeat in range(repeats):
                block_stride = stride if repeat == 0 else 1
                layers.append(InvertedResidual(channels, out_channels, block_stride, expansion, activation))
                strides.append(strides[-1] * block_stride)
                channels = out_channels
        self.features = nn.Sequential(*layers)
        # The vendor's decoders take, for each stride, the last layer output with that stride.
        last_layer_of_stride = {stride: index for index, stride in enumerate(strides)}
        self._stride_after_layer = {index: stride for stride, index in last_layer_of_stride.items()}
        self.channels = {stride: self._out_channels(layers[index]) for stride, index in last_layer_of_stride.items()}

    @staticmethod
    def _out_channels(layer: nn.Module) -> int:
        convs = [module for module in layer.modules() if isinstance(module, nn.Conv2d)]
        return convs[-1].out_channels

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        """Returns {stride: last feature map at that stride} for strides 2, 4, 8, 16 (and 32)."""
        features: dict[int, Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._stride_after_layer:
                features[self._stride_after_layer[index]] = x
        return features
