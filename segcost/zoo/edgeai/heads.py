"""The Lite segmentation heads of edgeai-torchvision: DeepLabV3Lite, FPNLite and UNetLite.

"Lite" means that every 3×3 conv of the neck, decoder and prediction is depthwise (MobileNet
encoders, ``group_size=None``) or grouped with the encoder's group width (RegNetX encoders,
``group_size=16/24/48``, i.e. ``groups = channels // group_size``), each followed by a 1×1.
All convs are bias-free and followed by BatchNorm2d (+ activation), except the final 1×1
classifier, which has neither BatchNorm nor activation — and, as in the vendor's
``ConvDWSepNormAct2d(..., bias=False)`` prediction block, no bias either.
Upsampling is bilinear interpolation by a fixed scale factor (align_corners=False), like the
vendor's ``ResizeWith``; the logits come out at input resolution when the input size is a
multiple of the encoder's output stride.

Facts taken from TI's edgeai-tensorvision (``deeplabv3plus_edgeailite.py``,
``fpn_edgeailite.py``, ``unet_edgeailite.py``, ``pixel2pixelnet_utils.py``) and
edgeai-torchmodelopt (``rf_blocks.DWASPPLiteBlock``, ``conv_blocks.ConvDWSepNormAct2d``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

ASPP_DILATIONS = (6, 12, 18)


def upsample(x: Tensor, factor: int) -> Tensor:
    """Bilinear resize by an integer factor (the vendor's ResizeWith(scale_factor, 'bilinear'))."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False, recompute_scale_factor=False)


def lite_groups(channels: int, group_size: int | None) -> int:
    """Groups of a Lite 3×3 conv on `channels`: depthwise if group_size is None, else channels // group_size."""
    if group_size is None:
        return channels
    if channels % group_size:
        raise ValueError(f"{channels} channels are not a multiple of the group size {group_size}")
    return channels // group_size


class SeparableConv(nn.Sequential):
    """Lite 3×3 conv (depthwise or grouped) + BN + act, then 1×1 conv + BN + act.

    Args:
        in_channels: input channels (kept by the 3×3 conv).
        out_channels: output channels of the 1×1 conv.
        group_size: None for depthwise, else the channels per group of the 3×3 conv.
        activation: activation class after both convs.
        dilation: dilation (and padding) of the 3×3 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, group_size: int | None,
                 activation: type[nn.Module], dilation: int = 1) -> None:
        super().__init__(
            Conv2dNormActivation(in_channels, in_channels, kernel_size=3, dilation=dilation,
                                 groups=lite_groups(in_channels, group_size), activation_layer=activation),
            Conv2dNormActivation(in_channels, out_channels, kernel_size=1, activation_layer=activation),
        )


class LitePrediction(nn.Sequential):
    """Prediction block: Lite 3×3 conv + BN (no activation), then the 1×1 classifier.

    Args:
        in_channels: channels of the decoder output.
        num_classes: output channels (logits).
        group_size: None for depthwise, else the channels per group of the 3×3 conv.
    """

    def __init__(self, in_channels: int, num_classes: int, group_size: int | None) -> None:
        super().__init__(
            Conv2dNormActivation(in_channels, in_channels, kernel_size=3,
                                 groups=lite_groups(in_channels, group_size), activation_layer=None),
            nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False),
        )


class ASPPLite(nn.Module):
    """ASPP without the image-pooling branch (the vendor's DWASPPLiteBlock, avg_pool=False).

    A 1×1 branch and three separable 3×3 branches with dilations 6/12/18, each to
    `aspp_channels`, concatenated (4 × aspp_channels) and projected by a 1×1 conv.

    Args:
        in_channels: channels of the encoder output.
        aspp_channels: output channels of each branch.
        out_channels: channels after the projection.
        group_size: None for depthwise, else the channels per group of the dilated 3×3 convs.
        activation: activation class.
    """

    def __init__(self, in_channels: int, aspp_channels: int, out_channels: int, group_size: int | None,
                 activation: type[nn.Module]) -> None:
        super().__init__()
        self.pointwise_branch = Conv2dNormActivation(in_channels, aspp_channels, kernel_size=1,
                                                     activation_layer=activation)
        self.dilated_branches = nn.ModuleList(
            SeparableConv(in_channels, aspp_channels, group_size, activation, dilation=dilation)
            for dilation in ASPP_DILATIONS)
        self.dropout = nn.Dropout2d(p=0.2)
        self.project = Conv2dNormActivation(aspp_channels * (1 + len(ASPP_DILATIONS)), out_channels, kernel_size=1,
                                            activation_layer=activation)

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.pointwise_branch(x)] + [branch(x) for branch in self.dilated_branches]
        return self.project(self.dropout(torch.cat(branches, dim=1)))


class DeepLabV3LiteDecoder(nn.Module):
    """DeepLabV3+-style Lite decoder on an output-stride-16 encoder.

    ASPP-lite on the deepest features, bilinear upsample to stride 4, concat with a 1×1
    shortcut of the stride-4 features, prediction at stride 4, bilinear upsample to the input.

    Args:
        encoder_channels: {stride: channels} of the encoder's features.
        num_classes: number of output classes.
        activation: activation class.
        group_size: None for depthwise, else the encoder's group width.
        aspp_channels: channels of the ASPP branches and output (256).
        shortcut_channels: output channels of the stride-4 shortcut (48).
    """

    def __init__(self, encoder_channels: dict[int, int], num_classes: int, activation: type[nn.Module] = nn.ReLU,
                 group_size: int | None = None, aspp_channels: int = 256, shortcut_channels: int = 48) -> None:
        super().__init__()
        self.output_stride = max(encoder_channels)
        self.aspp = ASPPLite(encoder_channels[self.output_stride], aspp_channels, aspp_channels, group_size, activation)
        self.shortcut = Conv2dNormActivation(encoder_channels[4], shortcut_channels, kernel_size=1,
                                             activation_layer=activation)
        self.prediction = LitePrediction(aspp_channels + shortcut_channels, num_classes, group_size)

    def forward(self, features: dict[int, Tensor]) -> Tensor:
        x = upsample(self.aspp(features[self.output_stride]), self.output_stride // 4)
        x = torch.cat([x, self.shortcut(features[4])], dim=1)
        return upsample(self.prediction(x), 4)


class FPNLiteDecoder(nn.Module):
    """FPN Lite decoder (in-loop smoothing) on an output-stride-32 encoder.

    ASPP-lite at stride 32 to `decoder_channels`; then, for strides 16, 8 and 4: bilinear ×2,
    add a 1×1 lateral of that stride's features, separable 3×3 smoothing (whose output feeds
    the next level); prediction at stride 4 and bilinear ×4 to the input.

    Args:
        encoder_channels: {stride: channels} of the encoder's features (strides 4…32).
        num_classes: number of output classes.
        decoder_channels: channels of the ASPP, laterals and smoothing convs.
        activation: activation class.
        group_size: None for depthwise, else the encoder's group width.
    """

    lateral_strides = (16, 8, 4)

    def __init__(self, encoder_channels: dict[int, int], num_classes: int, decoder_channels: int = 256,
                 activation: type[nn.Module] = nn.ReLU, group_size: int | None = None) -> None:
        super().__init__()
        self.aspp = ASPPLite(encoder_channels[32], decoder_channels, decoder_channels, group_size, activation)
        self.laterals = nn.ModuleList(
            Conv2dNormActivation(encoder_channels[stride], decoder_channels, kernel_size=1, activation_layer=activation)
            for stride in self.lateral_strides)
        self.smoothing = nn.ModuleList(
            SeparableConv(decoder_channels, decoder_channels, group_size, activation) for _ in self.lateral_strides)
        self.prediction = LitePrediction(decoder_channels, num_classes, group_size)

    def forward(self, features: dict[int, Tensor]) -> Tensor:
        x = self.aspp(features[32])
        for stride, lateral, smooth in zip(self.lateral_strides, self.laterals, self.smoothing):
            x = smooth(upsample(x, 2) + lateral(features[stride]))
        return upsample(self.prediction(x), 4)


class UNetLiteDecoder(nn.Module):
    """UNet Lite decoder on an output-stride-32 encoder.

    ASPP-lite at stride 32; then, for strides 16, 8, 4 and 2: bilinear ×2, concat the skip
    features of that stride, separable 3×3 to max(min_channels, skip channels) where
    min_channels = max(2 · num_classes, 32); prediction at stride 2 and bilinear ×2.

    Args:
        encoder_channels: {stride: channels} of the encoder's features (strides 2…32).
        num_classes: number of output classes.
        decoder_channels: channels of the ASPP output (256).
        activation: activation class.
        group_size: None for depthwise, else the encoder's group width.
    """

    skip_strides = (16, 8, 4, 2)

    def __init__(self, encoder_channels: dict[int, int], num_classes: int, decoder_channels: int = 256,
                 activation: type[nn.Module] = nn.ReLU, group_size: int | None = None) -> None:
        super().__init__()
        self.aspp = ASPPLite(encoder_channels[32], decoder_channels, decoder_channels, group_size, activation)
        min_channels = max(2 * num_classes, 32)
        channels = decoder_channels
        blocks = []
        for stride in self.skip_strides:
            skip_channels = encoder_channels[stride]
            out_channels = max(min_channels, skip_channels)
            blocks.append(SeparableConv(channels + skip_channels, out_channels, group_size, activation))
            channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.prediction = LitePrediction(channels, num_classes, group_size)

    def forward(self, features: dict[int, Tensor]) -> Tensor:
        x = self.aspp(features[32])
        for stride, block in zip(self.skip_strides, self.blocks):
            x = block(torch.cat([upsample(x, 2), features[stride]], dim=1))
        return upsample(self.prediction(x), 2)


class LiteSegmentationModel(nn.Module):
    """An encoder (returning {stride: features}) followed by a Lite decoder; returns logits.

    Args:
        encoder: module whose forward returns {stride: feature map}.
        decoder: module mapping that dict to logits at input resolution.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))
