"""MobileNetV2(S16) + DeepLabV3Lite built with onnx.helper: segcost's built-in default model.

The architecture follows DESIGN.md's facts about the zoo's Lite models (ReLU MobileNetV2
without the final 1280-channel conv, output stride 16 by making the stride-2 stage of the
160-channel blocks stride 1; ASPP-lite with depthwise-separable dilated branches and no
image pooling; a stride-4 decoder that concatenates the ×4-upsampled ASPP output with a
1×1 24→48 shortcut and predicts from the 304 channels with a depthwise-separable conv).
Checked against TI's edgeai-tensorvision sources (deeplabv3plus_edgeailite.py). At width
1.0, 512×512 and 32 classes its Conv MACs equal the zoo's logged 3,216,179,200 exactly,
which the tests check; `segcost analyze` with no model argument analyzes it, so a new user
sees real output without any file.
"""

from __future__ import annotations

import onnx

from segcost.samples.builder import GraphBuilder

# (expansion t, output channels c, repeats n, first stride s) of MobileNetV2
MOBILENETV2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                      (6, 160, 3, 2), (6, 320, 1, 1))


def _channels(channels: float, divisor: int = 8) -> int:
    """Round a width-scaled channel count as torchvision's _make_divisible does."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def mobilenetv2_s16(builder: GraphBuilder, x: str, width: float = 1.0,
                    channel_divisor: int = 8) -> tuple[str, int, str, int]:
    """Encoder; returns (stride-16 features, channels, stride-4 features, channels).

    channel_divisor: width-scaled channel counts round to a multiple of it (torchvision's
    round_nearest; 8 by default, smaller values give channel counts off the SIMD blocks).
    """
    channels = _channels(32 * width, channel_divisor)
    y = builder.conv_bn(x, 3, channels, 3, stride=2, name="encoder.stem")
    stride, low_level, low_channels = 2, y, channels
    block_index = 0
    for expansion, out_c, repeats, first_stride in MOBILENETV2_BLOCKS:
        out_channels = _channels(out_c * width, channel_divisor)
        for repeat in range(repeats):
            block_stride = first_stride if repeat == 0 else 1
            if block_stride == 2 and stride == 16:
                block_stride = 1  # S16: the last stride-2 stage keeps the resolution, no dilation
            name = f"encoder.block{block_index}"
            hidden = channels * expansion
            h = y if expansion == 1 else builder.conv_bn(y, channels, hidden, 1, name=f"{name}.expand")
            h = builder.conv_bn(h, hidden, hidden, 3, stride=block_stride, group=hidden, name=f"{name}.dw")
            h = builder.conv_bn(h, hidden, out_channels, 1, name=f"{name}.project", activation=None)
            if block_stride == 1 and channels == out_channels:
                h = builder.node("Add", [y, h], f"{name}.add")
            y, channels = h, out_channels
            stride *= block_stride
            block_index += 1
            if stride == 4:
                low_level, low_channels = y, channels
    return y, channels, low_level, low_channels


def _separable(builder: GraphBuilder, x: str, in_channels: int, out_channels: int, name: str,
               dilation: int = 1) -> str:
    y = builder.conv_bn(x, in_channels, in_channels, 3, group=in_channels, dilation=dilation, name=f"{name}.dw")
    return builder.conv_bn(y, in_channels, out_channels, 1, name=f"{name}.pw")


def deeplabv3lite(width: float = 1.0, num_classes: int = 21, height: int = 512, width_px: int = 512,
                  seed: int = 0, channel_divisor: int = 8) -> onnx.ModelProto:
    """MobileNetV2S16 + DeepLabV3Lite as an ONNX ModelProto (Conv + BatchNorm + Relu, unfused)."""
    builder = GraphBuilder(seed=seed)
    features, channels, low_level, low_channels = mobilenetv2_s16(builder, "input", width, channel_divisor)
    aspp_channels, shortcut_channels = 256, 48
    branches = [builder.conv_bn(features, channels, aspp_channels, 1, name="aspp.branch0")]
    for index, dilation in enumerate((6, 12, 18), start=1):
        branches.append(_separable(builder, features, channels, aspp_channels, f"aspp.branch{index}", dilation))
    y = builder.node("Concat", branches, "aspp.concat", axis=1)
    y = builder.conv_bn(y, 4 * aspp_channels, aspp_channels, 1, name="aspp.project")
    y = builder.resize(y, 4, "decoder.upsample")
    shortcut = builder.conv_bn(low_level, low_channels, shortcut_channels, 1, name="decoder.shortcut")
    y = builder.node("Concat", [y, shortcut], "decoder.concat", axis=1)
    merged = aspp_channels + shortcut_channels
    # The prediction works directly on the 304-channel concat: depthwise 3×3 + BN, then 1×1 → classes.
    y = builder.conv_bn(y, merged, merged, 3, group=merged, name="head.dw", activation=None)
    y = builder.conv(y, merged, num_classes, 1, name="head.classifier", bias=True)
    y = builder.resize(y, 4, "head.upsample")
    return builder.model("input", (1, 3, height, width_px), y, (1, num_classes, height, width_px))
