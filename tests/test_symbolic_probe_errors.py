"""`analyze --symbolic` on a model that cannot run at some probe size names that size and a --multiple that works."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.commands.symbolic import symbolic_report
from segcost.errors import InputError


def _stride_64_model(path) -> str:
    """Conv stride 32, then SpaceToDepth(2): spatial sizes must be multiples of 64 (at 32 the 1×1 map empties)."""
    w1 = numpy_helper.from_array(np.ones((4, 3, 32, 32), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((2, 16, 1, 1), np.float32), "w2")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w1"], ["c"], strides=[32, 32], name="patch"),
                               helper.make_node("SpaceToDepth", ["c"], ["s"], blocksize=2, name="s2d"),
                               helper.make_node("Conv", ["s", "w2"], ["y"], name="head")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def test_a_failing_probe_names_its_sizes_and_the_multiple_that_works(tmp_path):
    model = _stride_64_model(tmp_path / "m.onnx")
    with pytest.raises(InputError) as caught:
        symbolic_report(model, (), "table", 32)
    message = str(caught.value)
    assert "H=32, W=32" in message and "try --multiple 64" in message and "\n" not in message
    report = symbolic_report(model, (), "table", 64)  # the suggestion works
    assert "H a multiple of 64" in report
