"""A small ONNX graph builder for models segcost ships or tests with, without torch.

It writes standard ONNX (Conv without bias + BatchNormalization + Relu, Resize, Concat),
the form a PyTorch export with BatchNorm kept produces, so that later passes (fusion) and
the analyzer see what they see in real exports. Weights are random but deterministic.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Accumulates nodes and initializers; every method returns the output tensor name."""

    def __init__(self, seed: int = 0, opset: int = 17):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self._names: set[str] = set()

    def unique(self, base: str) -> str:
        name, suffix = base, 1
        while name in self._names:
            suffix += 1
            name = f"{base}_{suffix}"
        self._names.add(name)
        return name

    def constant(self, name: str, array: np.ndarray) -> str:
        name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        name = self.unique(name)
        output = f"{name}_out"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output

    def conv(self, x: str, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
             group: int = 1, dilation: int = 1, name: str = "conv", bias: bool = False) -> str:
        fan_in = in_channels // group * kernel * kernel
        weight = (self.rng.standard_normal((out_channels, in_channels // group, kernel, kernel))
                  * np.sqrt(2.0 / fan_in)).astype(np.float32)
        inputs = [x, self.constant(f"{name}.weight", weight)]
        if bias:
            bias_values = (0.1 * self.rng.standard_normal(out_channels)).astype(np.float32)
            inputs.append(self.constant(f"{name}.bias", bias_values))
        pad = dilation * (kernel - 1) // 2
        return self.node("Conv", inputs, name, kernel_shape=[kernel, kernel], strides=[stride, stride],
                         pads=[pad] * 4, dilations=[dilation, dilation], group=group)

    def batch_norm(self, x: str, channels: int, name: str) -> str:
        params = [
            (self.rng.uniform(0.4, 0.9, channels)),   # scale: < 1 keeps deep random nets from blowing up
            (0.1 * self.rng.standard_normal(channels)),  # shift
            (0.1 * self.rng.standard_normal(channels)),  # running mean
            (self.rng.uniform(0.8, 1.2, channels)),   # running var
        ]
        names = [self.constant(f"{name}.{field}", array.astype(np.float32))
                 for field, array in zip(("weight", "bias", "running_mean", "running_var"), params)]
        return self.node("BatchNormalization", [x, *names], f"{name}.bn", epsilon=1e-5)

    def conv_bn(self, x: str, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
                group: int = 1, dilation: int = 1, name: str = "conv", activation: str | None = "Relu") -> str:
        y = self.conv(x, in_channels, out_channels, kernel, stride, group, dilation, name=name)
        y = self.batch_norm(y, out_channels, name)
        if activation == "Relu":
            y = self.node("Relu", [y], f"{name}.relu")
        elif activation == "Relu6":
            zero = self.constant("zero", np.array(0.0, np.float32))
            six = self.constant("six", np.array(6.0, np.float32))
            y = self.node("Clip", [y, zero, six], f"{name}.relu6")
        return y

    def resize(self, x: str, factor: int, name: str, mode: str = "linear") -> str:
        scales = self.constant(f"{name}.scales", np.array([1, 1, factor, factor], dtype=np.float32))
        return self.node("Resize", [x, "", scales], name, mode=mode)

    def model(self, input_name: str, input_shape: tuple[int, ...], output: str, output_shape: tuple[int, ...],
              producer: str = "segcost") -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "segcost_sample",
            inputs=[helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
            outputs=[helper.make_tensor_value_info(output, TensorProto.FLOAT, list(output_shape))],
            initializer=self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name=producer)
        model.ir_version = 8
        return model
