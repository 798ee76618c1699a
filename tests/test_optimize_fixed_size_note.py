"""`optimize --input-shape` on a model with symbolic H/W says the written model is fixed at that size."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _dynamic_hw_model(path) -> None:
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "height", "width"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_optimize_notes_symbolic_hw_fixed_by_input_shape(tmp_path, run_cli):
    model, output = tmp_path / "m.onnx", tmp_path / "o.onnx"
    _dynamic_hw_model(model)
    code, _, err = run_cli("optimize", str(model), "--input-shape", "x=1x3x32x48", "-o", str(output))
    assert code == 0
    assert "input 'x': the written model is fixed at height=32, width=48" in err
    dims = [dim.dim_value for dim in onnx.load(output).graph.input[0].type.tensor_type.shape.dim]
    assert dims[2:] == [32, 48]   # what the note says


def test_no_note_when_the_model_is_static(tmp_path, run_cli):
    model, output = tmp_path / "m.onnx", tmp_path / "o.onnx"
    _dynamic_hw_model(model)
    static = onnx.load(model)
    for dim, value in zip(static.graph.input[0].type.tensor_type.shape.dim[2:], (32, 48)):
        dim.dim_value = value
    onnx.save(static, model)
    code, _, err = run_cli("optimize", str(model), "--input-shape", "x=1x3x32x48", "-o", str(output))
    assert code == 0 and "fixed at" not in err


def test_unnamed_dynamic_dims_are_named_by_axis(tmp_path, run_cli):
    """An unnamed dim (no dim_param, or paddle2onnx's dim_value -1) reads 'axis 2=32', not '?=32'."""
    model, output = tmp_path / "m.onnx", tmp_path / "o.onnx"
    _dynamic_hw_model(model)
    unnamed = onnx.load(model)
    dims = unnamed.graph.input[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[3].dim_value = -1
    onnx.save(unnamed, model)
    code, _, err = run_cli("optimize", str(model), "--input-shape", "x=1x3x32x48", "-o", str(output))
    assert code == 0 and "the written model is fixed at axis 2=32, axis 3=48" in err and "?" not in err
