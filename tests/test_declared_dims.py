"""A declared dim_value that is no size (-1 from paddle2onnx, 0 on an input) reads as an unnamed dim."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.analyzer.symbolic import collect_symbols
from segcost.errors import ShapeError
from segcost.frontends.onnx import load_model
from segcost.shapes import symbolic_inputs


def _conv_model(batch: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8, 16, 16])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g", [x], [y],
                              initializer=[numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize("batch", [-1, 0])
def test_non_size_batch_is_an_unnamed_dim(batch):
    """R3: --symbolic printed 'MACs = 216·-1·H·W'; the dim is now unnamed (x[0]) like an empty dim."""
    graph = load_model(_conv_model(batch))
    assert graph.shape("x") == (None, 3, 16, 16)
    found = symbolic_inputs(graph)
    assert [symbol.name for symbol in collect_symbols(found, 32)] == ["x[0]"]
    with pytest.raises(ShapeError, match="input 'x' has an unnamed dynamic dimension at axis 0"):
        analyze(graph)
    assert analyze(load_model(_conv_model(batch), {"x": (2, 3, 16, 16)})).totals.macs == 2 * 8 * 27 * 16 * 16
