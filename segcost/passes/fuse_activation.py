"""Mark Conv + Relu / Clip(0, 6) / LeakyRelu as one fused layer.

The graph stays standard ONNX (onnxruntime runs it unchanged); the Conv's
``meta["fused_activation"]`` names the activation and the activation's
``meta["fused_into"]`` names the Conv, so target cost reports can treat the activation as
free, as the accelerator applies it in the convolution's output stage.
"""

from __future__ import annotations

from segcost.ir import Graph
from segcost.ir.opforms import read_operand
from segcost.passes._infra import PassBase, PassResult

__all__ = ["FuseConvActivationPass"]

CONV_TYPES = ("Conv", "ConvTranspose")


def _is_relu6(graph: Graph, key: str) -> bool:
    """Clip with constant bounds min = 0 and max = 6 or none (ReLU6 / ReLU), in every opset's form.

    Bounds are read through segcost.ir.opforms: attributes before opset 11, inputs from 11
    (initializers or Constant nodes; an omitted or empty-named max is unbounded, so
    Clip(x, 0) is a ReLU).
    """
    low, high = read_operand(graph, key, "min"), read_operand(graph, key, "max")
    if not low.known or low.scalar() != 0.0:
        return False
    return not high.given or (high.known and high.scalar() in (6.0, float("inf")))


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
                activation.op_type == "Clip" and _is_relu6(graph, users[0]))
            if not supported or activation.domain:
                continue
            conv.meta["fused_activation"] = users[0]
            activation.meta["fused_into"] = key
            marked += 1
        return PassResult(graph, bool(marked), [f"fused {marked} activations into convolutions"] if marked else [])
