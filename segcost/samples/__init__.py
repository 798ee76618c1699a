"""Models built on the fly with onnx.helper (no torch): the CLI's default and test fixtures."""

from segcost.samples.deeplabv3lite import deeplabv3lite

DEFAULT_SAMPLE = "MobileNetV2S16+DeepLabV3Lite (built-in, 21 classes, 1x3x512x512)"

__all__ = ["DEFAULT_SAMPLE", "deeplabv3lite"]
