"""`optimize` on valid model forms other exporters write: the written model must be valid and run the same.

Each case is a form segcost's own tests did not produce (found by running segcost on models
from outside the project): a dim_value -1 batch (paddle2onnx), a graph output that is an
initializer, graph input or Constant, IR-3 models (initializers listed as inputs), and
initializers that are also graph inputs at IR ≥ 4 (torch keep_initializers_as_inputs=True).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segcost.frontends.onnx import load_model
from segcost.ir.feeds import random_feeds
from segcost.pipeline import optimize_model


def _conv_model(batch, opset: int = 17, ir_version: int = 8, extra_outputs=(), nodes=(), initializer_inputs=False):
    weight = numpy_helper.from_array(np.linspace(-1, 1, 4 * 3 * 9, dtype=np.float32).reshape(4, 3, 3, 3), "w")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])]
    if initializer_inputs:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 3, 3]))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["y"], name="relu"), *nodes],
        "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None), *extra_outputs], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def test_random_feeds_treat_a_negative_batch_as_symbolic():
    """paddle2onnx writes a dynamic batch as dim_value -1: it runs at batch 1 (was: numpy's 'negative dimensions')."""
    model = _conv_model(-1)
    graph = load_model(model)
    feeds = random_feeds(model, graph)
    assert feeds["x"].shape == (1, 3, 16, 16)


def test_optimize_float_and_int8_on_a_negative_batch():
    from segcost.quant.quantize import QuantizeOptions

    result = optimize_model(load_model(_conv_model(-1)))
    onnx.checker.check_model(result.model, full_check=True)
    assert result.max_abs_diff is not None
    int8 = optimize_model(load_model(_conv_model(-1)), int8=QuantizeOptions(calibration="synthetic", calib_size=1))
    assert any(node.op_type == "QuantizeLinear" for node in int8.model.graph.node)
