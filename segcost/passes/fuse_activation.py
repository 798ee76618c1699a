"""Mark Conv + Relu / Clip(0, 6) / LeakyRelu as one fused layer.

The graph stays standard ONNX (onnxruntime runs it unchanged); the Conv's
``meta["fused_activation"]`` names the activation and the activation's
``meta["fused_into"]`` names the Conv, so target cost reports can treat the activation as
free, as the accelerator applies it in the convolution's output stage.
"""

from __future__ import annotations

import numpy as np

from segcost.ir import Graph
from segcost.passes._infra import PassBase, PassResult

__all__ = ["FuseConvActivationPass"]

CONV_TYPES = ("Conv", "ConvTranspose")


def _is_relu6(graph: Graph, node) -> bool:
    """Clip whose bounds are constants 0 and 6 (ReLU6), from inputs (opset ≥ 11) or attributes."""
    if len(node.inputs) >= 3:
        bounds = []
        for tensor in node.inputs[1:3]:
            if not tensor or tensor not in graph.initializers:
                return False
            bounds.append(float(np.asarray(graph.initializers[tensor].array).reshape(-1)[0]))
    else:
        bounds = [node.attrs.get("min", float("-inf")), node.attrs.get("max", float("inf"))]
    return bounds[0] == 0.0 and bounds[1] in (6.0, float("inf"))


class FuseConvActivationPass(PassBase):
    """Conv whose only consumer is Relu, ReLU6-style Clip or LeakyRelu gets the activation fused.

    Cases:
      1. Relu and LeakyRelu fuse always; Clip only with constant bounds (0, 6) or (0, ∞).
      2. A Conv already marked, or one whose output is also a graph output, is left alone.
    """

    name = "fuse-conv-activation"

    def call(self, graph: Graph) -> PassResult:
        marked = 0
        for key in graph.topological_order():
            conv = graph.node(key)
            if conv.op_type not in CONV_TYPES or conv.domain or "fused_activation" in conv.meta:
                continue
            users = graph.consumers(conv.outputs[0])
            if len(users) != 1 or conv.outputs[0] in graph.outputs:
                continue
            activation = graph.node(users[0])
            supported = activation.op_type in ("Relu", "LeakyRelu") or (
                activation.op_type == "Clip" and _is_relu6(graph, activation))
            if not supported or activation.domain:
                continue
            conv.meta["fused_activation"] = users[0]
            activation.meta["fused_into"] = key
            marked += 1
        return PassResult(graph, bool(marked), [f"fused {marked} activations into convolutions"] if marked else [])
