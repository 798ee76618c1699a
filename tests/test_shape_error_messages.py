"""A layer whose input shape is open names the node where shape inference stopped, and why (breaker6 R10)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(path, nodes, inits, opsets=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 33, 33])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *opsets]), path)


def test_mismatched_concat_is_named_with_its_input_shapes(run_cli, tmp_path):
    """MaxPool /2 then ×2 at 33×33 gives 32×32: the Concat fails, not 'an op without shape inference upstream'."""
    _save(tmp_path / "m.onnx",
          [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
           helper.make_node("Resize", ["p", "", "scales"], ["r"], mode="nearest", name="up"),
           helper.make_node("Concat", ["x", "r"], ["c"], axis=1, name="cat"),
           helper.make_node("Conv", ["c", "w"], ["y"], name="conv")],
          [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
           numpy_helper.from_array(np.ones((4, 6, 3, 3), np.float32), "w")])
    code, _, err = run_cli("analyze", str(tmp_path / "m.onnx"))
    assert code == 2 and err.count("\n") == 1
    assert "shape inference stopped at node 'cat' (Concat; inputs x [1, 3, 33, 33], r [1, 3, 32, 32])" in err
    assert "custom op" not in err


def test_custom_domain_op_is_named_as_such(run_cli, tmp_path):
    _save(tmp_path / "m.onnx",
          [helper.make_node("Mystery", ["x"], ["m"], domain="vendor.ops", name="mystery"),
           helper.make_node("Conv", ["m", "w"], ["y"], name="conv")],
          [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")], [helper.make_opsetid("vendor.ops", 1)])
    code, _, err = run_cli("analyze", str(tmp_path / "m.onnx"), "--strict")
    assert code == 2 and "node 'mystery' (Mystery; inputs x [1, 3, 33, 33]): a vendor.ops op" in err, err
