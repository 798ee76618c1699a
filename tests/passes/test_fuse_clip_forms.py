"""Conv + Clip fusion reads Clip's bounds in every opset form (segcost.ir.opforms)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.frontends.onnx import load_model
from segcost.passes import FuseConvActivationPass


def conv_clip(opset: int, clip_inputs: list[str], constants: dict, constant_nodes: dict | None = None,
              **clip_attrs) -> onnx.ModelProto:
    """x → Conv(3×3, 4→8) → Clip(clip_inputs) → y."""
    nodes = [helper.make_node("Constant", [], [name], name=f"const_{name}", value=numpy_helper.from_array(value, name))
             for name, value in (constant_nodes or {}).items()]
    nodes += [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("Clip", ["c", *clip_inputs], ["y"], name="clip", **clip_attrs)]
    weights = {"w": np.ones((8, 4, 3, 3), np.float32), **constants}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


ZERO, SIX = np.float32(0), np.float32(6)


@pytest.mark.parametrize("model,fused", [
    (conv_clip(13, ["lo"], {"lo": ZERO}), True),                          # Clip(x, 0): ReLU, max omitted
    (conv_clip(13, ["lo", ""], {"lo": ZERO}), True),                      # empty max name
    (conv_clip(13, ["lo", "hi"], {}, {"lo": ZERO, "hi": SIX}), True),     # bounds from Constant nodes
    (conv_clip(13, ["lo", "hi"], {"lo": ZERO, "hi": SIX}), True),         # initializers
    (conv_clip(10, [], {}, min=0.0, max=6.0), True),                      # attributes before opset 11
    (conv_clip(10, [], {}, min=0.0), True),
    (conv_clip(13, ["", "hi"], {"hi": SIX}), False),                      # no lower bound: not a ReLU
    (conv_clip(13, ["lo", "hi"], {"lo": np.float32(-1), "hi": SIX}), False),
    (conv_clip(10, [], {}), False),                                       # no bounds: identity
])
def test_clip_forms_fuse_as_relu_or_relu6(model, fused):
    graph = load_model(model)
    result = FuseConvActivationPass()(graph)
    assert result.modified is fused
    assert (graph.node("conv").meta.get("fused_activation") == "clip") is fused
