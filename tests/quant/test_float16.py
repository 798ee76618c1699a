"""int8 of float16 models (breaker 2): quantized through a float32 copy, float16 inputs and outputs kept."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _float16_model(opset: int = 17) -> onnx.ModelProto:
    """Conv → Relu → Concat(with a signed Conv) → Conv, all float16."""
    rng = np.random.default_rng(0)

    def weight(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float16),
                                       name)

    inits = [weight("w1", [8, 3, 3, 3]), weight("w2", [8, 3, 3, 3]), weight("w3", [4, 16, 1, 1]),
             numpy_helper.from_array(np.zeros(8, np.float16), "b1")]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="c1", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
             helper.make_node("Conv", ["input", "w2"], ["c2"], name="c2", pads=[1] * 4),
             helper.make_node("Concat", ["r1", "c2"], ["cat"], name="cat", axis=1),
             helper.make_node("Conv", ["cat", "w3"], ["out"], name="out")]
    graph = helper.make_graph(nodes, "fp16", [helper.make_tensor_value_info("input", TensorProto.FLOAT16,
                                                                          [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT16, [1, 4, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_int8_of_a_float16_model_calibrates_in_float16_and_runs(run_cli, tmp_path):
    onnx.save_model(_float16_model(), tmp_path / "m.onnx")
    output = tmp_path / "m8.onnx"
    code, out, err = run_cli("optimize", str(tmp_path / "m.onnx"), "--int8", "--calib-size", "4", "-o", str(output))
    assert code == 0, err   # "Unexpected input data type. Actual: (tensor(float)), expected: (tensor(float16))" before
    int8 = onnx.load(output)
    onnx.checker.check_model(int8, full_check=True)
    assert int8.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    accuracy = json.loads((tmp_path / "m8.accuracy.json").read_text())
    assert accuracy["failures"] == []
    assert accuracy["outputs"][0]["sqnr_db"] > 25
    assert "float16 model: quantized as float32" in out
