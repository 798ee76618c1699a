"""Small hand-built models for the target cost model tests (onnx.helper, no torch)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segcost.frontends.onnx import load_model
from segcost.pipeline import build_pipeline


def _weight(rng, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)


def conv_chain(channels: int = 64, size: int = 32, middle: str | None = None, dw_kernel: int = 3,
               dw_stride: int = 1, relu: bool = True) -> onnx.ModelProto:
    """conv 1x1 (→ Relu) → MIDDLE → conv 1x1, on a 1×C×size×size input.

    MIDDLE: None (nothing), "softplus" (a standard op the TIDL profiles do not list),
    "custom" (a custom-domain op with a declared output shape) or "depthwise" (a
    dw_kernel×dw_kernel depthwise conv with stride dw_stride).
    """
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(_weight(rng, channels, channels, 1, 1), "w1"),
             numpy_helper.from_array(_weight(rng, channels, channels, 1, 1), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[1, 1])]
    current = "c1"
    if relu:
        nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="relu1"))
        current = "r1"
    value_infos = []
    out_size = size
    if middle == "custom":
        nodes.append(helper.make_node("MyOp", [current], ["m"], name="custom", domain="com.example"))
        value_infos.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, channels, size, size]))
        current = "m"
    elif middle == "softplus":
        nodes.append(helper.make_node("Softplus", [current], ["m"], name="softplus"))
        current = "m"
    elif middle == "depthwise":
        inits.append(numpy_helper.from_array(_weight(rng, channels, 1, dw_kernel, dw_kernel), "wd"))
        pad = dw_kernel // 2
        nodes.append(helper.make_node("Conv", [current, "wd"], ["d"], name="dw", kernel_shape=[dw_kernel, dw_kernel],
                                      strides=[dw_stride, dw_stride], pads=[pad] * 4, group=channels))
        current = "d"
        out_size = (size + 2 * pad - dw_kernel) // dw_stride + 1
    nodes.append(helper.make_node("Conv", [current, "w2"], ["y"], name="conv2", kernel_shape=[1, 1]))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                           [1, channels, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                             [1, channels, out_size, out_size])],
                              initializer=inits, value_info=value_infos)
    opsets = [helper.make_opsetid("", 17)]
    if middle == "custom":
        opsets.append(helper.make_opsetid("com.example", 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def custom_tail(channels: int = 64, size: int = 32) -> onnx.ModelProto:
    """conv 1x1 → custom-domain op producing the graph output (its shape is declared there)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[1, 1]),
             helper.make_node("MyOp", ["c1"], ["y"], name="custom", domain="com.example")]
    shape = [1, channels, size, size]
    graph = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              initializer=[numpy_helper.from_array(_weight(rng, channels, channels, 1, 1), "w1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    return model


def single_conv(in_channels: int, out_channels: int, size: int, kernel: int = 3, group: int = 1) -> onnx.ModelProto:
    """One Conv (padding 'same') on a 1×C_in×size×size input."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(_weight(rng, out_channels, in_channels // group, kernel, kernel), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[kernel, kernel],
                            pads=[kernel // 2] * 4, group=group)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                            [1, in_channels, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_channels, size, size])],
                              initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def fused(model: onnx.ModelProto):
    """The model loaded into the IR and run through segcost's fusion pipeline."""
    return build_pipeline()(load_model(model)).graph
