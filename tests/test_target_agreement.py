"""`analyze --target`, `check --max-latency-ms` and `cost` run one pipeline and agree to the digit."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.samples import deeplabv3lite


def constant_weight_model() -> onnx.ModelProto:
    """Conv whose weight is a Constant node → BN → Relu → Div by a Constant."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    bn = [numpy_helper.from_array(value.astype(np.float32), name) for name, value in
          (("g", rng.uniform(0.5, 1.5, 16)), ("b", rng.standard_normal(16)), ("m", rng.standard_normal(16)),
           ("v", rng.uniform(0.5, 2, 16)))]
    nodes = [helper.make_node("Constant", [], ["w"], name="wc", value=numpy_helper.from_array(weight)),
             helper.make_node("Constant", [], ["k"], name="kc",
                              value=numpy_helper.from_array(np.array(2.0, np.float32))),
             helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Div", ["r", "k"], ["y"], name="div")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=bn)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("which", ["built-in", "constant-weight"])
def test_analyze_target_check_and_cost_agree_to_the_digit(which, run_cli, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(deeplabv3lite(width=0.35, num_classes=5, height=64, width_px=64) if which == "built-in"
                    else constant_weight_model(), path)
    code, out, err = run_cli("analyze", str(path), "--target", "tda4vm", "--format", "json")
    assert code == 0, err
    from_analyze = json.loads(out)["target"]["totals"]["latency_ms"]
    code, out, err = run_cli("cost", str(path), "--target", "tda4vm", "--format", "json")
    assert code == 0, err
    from_cost = json.loads(out)["totals"]["latency_ms"]
    code, out, err = run_cli("check", str(path), "--target", "tda4vm", "--max-latency-ms", "1000", "--format", "json")
    assert code == 0, err
    from_check = json.loads(out)["outcomes"][0]["actual"]
    assert repr(from_analyze) == repr(from_cost) == repr(from_check)
