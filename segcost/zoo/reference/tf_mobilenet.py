"""MobileNetV2 and MobileNetV3-Large backbones as TensorFlow DeepLab builds them.

Facts taken from tensorflow/models ``research/slim/nets/mobilenet`` (``mobilenet_v2.V2_DEF``,
``mobilenet_v3.V3_LARGE``, ``conv_blocks.expanded_conv`` / ``squeeze_excite``) and
``research/deeplab/core/feature_extractor.py``:

- MobileNetV2 ends at ``layer_18`` (the 320-channel block): no 1280-channel conv. With a
  depth multiplier other than 1.0 the channel counts are rounded to a multiple of 1 (not 8),
  so 0.5 gives 16/8/12/16/32/48/80/160; expansion sizes are rounded to multiples of 8.
- ``mobilenet_v3_large_seg`` halves the outputs of the last three 160-channel blocks
  (→ 80, expansions 336/480/480) and of the 960-channel conv (→ 480), and ends there
  (``layer_17``). Squeeze-and-excite squeezes to round8(channels / 4) with biased 1×1 convs,
  ReLU, and a hard sigmoid gate.
- Output stride: once the requested stride is reached, later strides become 1 and the
  depthwise convs are dilated by the skipped factor (slim's ``mobilenet_base``).
- Every conv is bias-free and followed by BatchNorm, except the SE convs.

Layers are numbered as slim does (``layer_1`` is the stem conv) so that the decoder's end
points (``layer_N/depthwise_output``) can be requested by number. TF pads "SAME"; symmetric
padding here gives the same output sizes for every input size, hence the same MACs.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

# MobileNetV2 after the stem (layer_1): (expansion, output channels, stride) of layers 2..18.
MOBILENET_V2_LAYERS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)

# MobileNetV3-Large for segmentation, layers 2..16: (expanded channels, output channels,
# kernel, stride, squeeze-and-excite, hard-swish activation); layer_17 is a 1×1 conv → 480.
MOBILENET_V3_LARGE_SEG_LAYERS = (
    (16, 16, 3, 1, False, False),
    (64, 24, 3, 2, False, False),
    (72, 24, 3, 1, False, False),
    (72, 40, 5, 2, True, False),
    (120, 40, 5, 1, True, False),
    (120, 40, 5, 1, True, False),
    (240, 80, 3, 2, False, True),
    (200, 80, 3, 1, False, True),
    (184, 80, 3, 1, False, True),
    (184, 80, 3, 1, False, True),
    (480, 112, 3, 1, True, True),
    (672, 112, 3, 1, True, True),
    (336, 80, 5, 2, True, True),
    (480, 80, 5, 1, True, True),
    (480, 80, 5, 1, True, True),
)
MOBILENET_V3_STEM_CHANNELS = 16
MOBILENET_V3_LAST_CHANNELS = 480


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round `value` to a multiple of `divisor`, never more than 10% down (slim's rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    """slim's squeeze_excite: global mean → 1×1 (bias) + ReLU → 1×1 (bias) + hard sigmoid → scale.

    Args:
        channels: channels of the gated tensor.
        squeeze_factor: the squeezed width is round8(channels / squeeze_factor).
    """

    def __init__(self, channels: int, squeeze_factor: int = 4) -> None:
        super().__init__()
        squeezed = make_divisible(channels / squeeze_factor, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.squeeze = nn.Conv2d(channels, squeezed, 1, bias=True)
        self.relu = nn.ReLU()
        self.excite = nn.Conv2d(squeezed, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.excite(self.relu(self.squeeze(self.pool(x)))))


class ExpandedConv(nn.Module):
    """slim's expanded_conv: [1×1 expand] → k×k depthwise → [SE] → 1×1 linear projection [+ input].

    The expand conv exists only when the expanded width exceeds the input width; the
    residual only when the stride is 1 and the widths match.

    Args:
        in_channels: input channels.
        expanded_channels: channels of the depthwise conv.
        out_channels: output channels.
        kernel_size: depthwise kernel size.
        stride: depthwise stride.
        dilation: depthwise dilation.
        activation: activation class of the expand and depthwise convs.
        squeeze_excite: whether an SE block follows the depthwise conv.
    """

    def __init__(self, in_channels: int, expanded_channels: int, out_channels: int, kernel_size: int, stride: int,
                 dilation: int, activation: type[nn.Module], squeeze_excite: bool = False) -> None:
        super().__init__()
        self.expand = (Conv2dNormActivation(in_channels, expanded_channels, 1, activation_layer=activation)
                       if expanded_channels > in_channels else nn.Identity())
        self.depthwise = Conv2dNormActivation(expanded_channels, expanded_channels, kernel_size, stride=stride,
                                              dilation=dilation, groups=expanded_channels,
                                              activation_layer=activation)
        self.squeeze_excite = SqueezeExcite(expanded_channels) if squeeze_excite else nn.Identity()
        self.project = Conv2dNormActivation(expanded_channels, out_channels, 1, activation_layer=None)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (block output, depthwise output) — the latter is slim's ``depthwise_output``."""
        depthwise_output = self.depthwise(self.expand(x))
        y = self.project(self.squeeze_excite(depthwise_output))
        return (x + y if self.use_residual else y), depthwise_output


class _StridePlanner:
    """slim's output-stride rule: once `output_stride` is reached, strides become dilations."""

    def __init__(self, output_stride: int | None) -> None:
        self.output_stride = output_stride
        self.current_stride = 1
        self.rate = 1

    def next(self, stride: int) -> tuple[int, int]:
        """Returns (stride, dilation) for a layer whose nominal stride is `stride`."""
        if self.output_stride is not None and self.current_stride == self.output_stride:
            dilation, self.rate = self.rate, self.rate * stride
            return 1, dilation
        self.current_stride *= stride
        return stride, 1


class _SlimMobileNet(nn.Module):
    """Stem conv + ExpandedConv blocks [+ final conv]; forward returns features and end points.

    Args:
        stem: the layer_1 conv module.
        blocks: layers 2..N as ExpandedConv modules.
        head: an optional final module (MobileNetV3's 1×1 conv), or None.
        end_point_layers: slim layer numbers whose depthwise output the forward returns.
    """

    out_channels: int  # channels of the final feature map, set by the builders below

    def __init__(self, stem: nn.Module, blocks: list[ExpandedConv], head: nn.Module | None,
                 end_point_layers: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head if head is not None else nn.Identity()
        self.end_point_layers = end_point_layers

    def forward(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """Returns (last feature map, {slim layer number: that layer's depthwise output})."""
        x = self.stem(x)
        end_points = {}
        for layer_number, block in enumerate(self.blocks, start=2):
            x, depthwise_output = block(x)
            if layer_number in self.end_point_layers:
                end_points[layer_number] = depthwise_output
        return self.head(x), end_points


def mobilenet_v2(depth_multiplier: float = 1.0, output_stride: int | None = None,
                 end_point_layers: tuple[int, ...] = ()) -> _SlimMobileNet:
    """TF DeepLab's MobileNetV2 feature extractor (up to layer_18, ReLU6).

    Args:
        depth_multiplier: channel multiplier (1.0 rounds to multiples of 8, others to 1).
        output_stride: 8, 16 or 32 (None: 32).
        end_point_layers: layers whose depthwise output to return (e.g. (4,) for stride 4).

    Returns:
        The backbone; its forward returns (features, end points).
    """
    divisor = 8 if depth_multiplier == 1.0 else 1
    planner = _StridePlanner(output_stride)
    channels = make_divisible(32 * depth_multiplier, divisor)
    stem_stride, _ = planner.next(2)
    stem = Conv2dNormActivation(3, channels, 3, stride=stem_stride, activation_layer=nn.ReLU6)
    blocks = []
    for index, (expansion, base_channels, nominal_stride) in enumerate(MOBILENET_V2_LAYERS):
        out_channels = make_divisible(base_channels * depth_multiplier, divisor)
        # The first block expands by 1 rounded to 1; all others by 6 rounded to 8.
        expanded = channels if index == 0 else make_divisible(channels * expansion, 8)
        stride, dilation = planner.next(nominal_stride)
        blocks.append(ExpandedConv(channels, expanded, out_channels, 3, stride, dilation, nn.ReLU6))
        channels = out_channels
    backbone = _SlimMobileNet(stem, blocks, None, end_point_layers)
    backbone.out_channels = channels
    return backbone


def mobilenet_v3_large_seg(output_stride: int | None = None,
                           end_point_layers: tuple[int, ...] = ()) -> _SlimMobileNet:
    """TF DeepLab's ``mobilenet_v3_large_seg`` feature extractor (up to layer_17, 480 channels).

    Args:
        output_stride: 8, 16 or 32 (None: 32; the Cityscapes model uses 32).
        end_point_layers: layers whose depthwise output to return (e.g. (7,) for stride 8).

    Returns:
        The backbone; its forward returns (features, end points).
    """
    planner = _StridePlanner(output_stride)
    stem_stride, _ = planner.next(2)
    stem = Conv2dNormActivation(3, MOBILENET_V3_STEM_CHANNELS, 3, stride=stem_stride, activation_layer=nn.Hardswish)
    channels = MOBILENET_V3_STEM_CHANNELS
    blocks = []
    for expanded, out_channels, kernel, nominal_stride, squeeze, hard_swish in MOBILENET_V3_LARGE_SEG_LAYERS:
        stride, dilation = planner.next(nominal_stride)
        activation = nn.Hardswish if hard_swish else nn.ReLU
        blocks.append(ExpandedConv(channels, expanded, out_channels, kernel, stride, dilation, activation, squeeze))
        channels = out_channels
    head = Conv2dNormActivation(channels, MOBILENET_V3_LAST_CHANNELS, 1, activation_layer=nn.Hardswish)
    backbone = _SlimMobileNet(stem, blocks, head, end_point_layers)
    backbone.out_channels = MOBILENET_V3_LAST_CHANNELS
    return backbone
