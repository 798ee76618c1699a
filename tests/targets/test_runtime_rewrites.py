"""The cpu cost model prices the graph onnxruntime runs: a zero Pad before a conv costs what the conv's own pads cost.

onnxruntime's level-1 PadFusion folds the Pad into the Conv at session creation, so neither
the Pad kernel nor the NCHWc layout reorders around it run (HF MobileNetV2's legacy export:
55 such Pads were predicted at 1.86 ms of layers plus 2.96 ms of reorders, 7.93 ms in all,
while onnxruntime measured ~2.7 ms and the dynamo export of the same module was predicted
3.14 ms). TIDL maps Pad to its own layer (TIDL_PadLayer), so tda4vm still prices it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.pipeline import estimate_on_target


def depthwise_block(explicit_pad: bool, channels: int = 16, size: int = 32) -> onnx.ModelProto:
    """conv 1x1 → Relu → [Pad(0, 1 px)] → depthwise 3x3 (pads 0, or pads 1 without the Pad) → Relu → conv 1x1."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)
             for name, shape in (("w1", (channels, 3, 1, 1)), ("dw", (channels, 1, 3, 3)),
                                 ("w2", (channels, channels, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="expand", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1")]
    source, pads = "r1", [1, 1, 1, 1]
    if explicit_pad:
        inits += [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
                  numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
        nodes.append(helper.make_node("Pad", ["r1", "pads", "zero"], ["p"], name="pad", mode="constant"))
        source, pads = "p", [0, 0, 0, 0]
    nodes += [helper.make_node("Conv", [source, "dw"], ["d"], name="depthwise", kernel_shape=[3, 3], group=channels,
                               pads=pads),
              helper.make_node("Relu", ["d"], ["r2"], name="relu2"),
              helper.make_node("Conv", ["r2", "w2"], ["y"], name="project", kernel_shape=[1, 1])]
    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])
    graph = helper.make_graph(nodes, "block", [image], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cpu_prices_a_zero_pad_as_the_conv_padding_it_becomes():
    """Same layers, shapes and attributes after the fold: the prediction is equal, not merely close."""
    padded = estimate_on_target(load_model(depthwise_block(True)), "cpu")
    plain = estimate_on_target(load_model(depthwise_block(False)), "cpu")
    assert [layer.op_type for layer in padded.layers] == [layer.op_type for layer in plain.layers]
    assert [layer.ms for layer in padded.layers] == [layer.ms for layer in plain.layers]
    assert [(t.direction, t.ms) for t in padded.transfers] == [(t.direction, t.ms) for t in plain.transfers]
    assert padded.totals.latency_ms == plain.totals.latency_ms
    assert padded.totals.macs == plain.totals.macs == analyze(load_model(depthwise_block(True))).totals.macs


def test_tda4vm_still_prices_the_pad_layer():
    padded = estimate_on_target(load_model(depthwise_block(True)), "tda4vm")
    plain = estimate_on_target(load_model(depthwise_block(False)), "tda4vm")
    assert "Pad" in [layer.op_type for layer in padded.layers]
    assert padded.totals.latency_ms > plain.totals.latency_ms
    assert padded.totals.macs == plain.totals.macs
