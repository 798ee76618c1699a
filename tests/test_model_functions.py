"""Load-time forms of other tools: model-local functions are inlined, onnxruntime NCHWc files refused."""

from __future__ import annotations

import numpy as np
import onnx.parser
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.errors import InputError
from segcost.frontends.onnx import load_model

MODEL = """
<ir_version: 8, opset_import: ["" : 17, "local" : 1]>
g (float[1,8,16,16] x, float[8,8,3,3] w) => (float[1,8,16,16] y) {
  t = local.Block <alpha: float = 0.5> (x, w)
  y = local.Block (t, w)
}
<domain: "local", opset_import: ["" : 17, "local" : 1]>
Inner (a, w) => (b) {
  b = Conv <pads = [1,1,1,1]> (a, w)
}
<domain: "local", opset_import: ["" : 17, "local" : 1]>
Block <alpha: float = 0.1> (a, w) => (b) {
  c = local.Inner (a, w)
  b = LeakyRelu <alpha: float = @alpha> (c)
}
"""


def test_function_calls_are_inlined_and_counted():
    """R1: two calls of a function that calls another, with an attribute reference: 2 Convs' MACs."""
    model = onnx.parser.parse_model(MODEL)
    result = analyze(load_model(model))
    assert result.totals.macs == 2 * 16 * 16 * 8 * 8 * 9
    assert sorted(layer.op_type for layer in result.layers) == ["Conv", "Conv", "LeakyRelu", "LeakyRelu"]
    assert result.coverage.unsupported == []
    assert any("2 calls of model-local functions inlined" in warning for warning in result.warnings)
    assert len(model.functions) == 2 and model.graph.node[0].op_type == "Block"   # the caller's model is kept



def test_onnxruntime_nchwc_layout_is_refused():
    """R16: a model saved at ORT_ENABLE_ALL (com.microsoft.nchwc Conv on padded channels) counted 0 MACs."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])
    nodes = [helper.make_node("ReorderInput", ["x"], ["xb"], domain="com.microsoft.nchwc"),
             helper.make_node("Conv", ["xb", "w"], ["yb"], domain="com.microsoft.nchwc", kernel_shape=[1, 1]),
             helper.make_node("ReorderOutput", ["yb"], ["y"], domain="com.microsoft.nchwc", channels=8)]
    graph = helper.make_graph(nodes, "g", [x], [y],
                              initializer=[numpy_helper.from_array(np.ones((8, 8, 1, 1), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft.nchwc", 1)])
    with pytest.raises(InputError, match="ORT_ENABLE_ALL .NCHWc layout ops: Conv, ReorderInput, ReorderOutput"):
        load_model(model)


def test_function_of_another_opset_is_converted_and_inlined():
    """A function importing opset 18 in an opset-17 model: onnx leaves it in place unless converting."""
    model = onnx.parser.parse_model("""
<ir_version: 8, opset_import: ["" : 17, "local" : 1]>
g (float[1,8,16,16] x, float[8,8,3,3] w) => (y) {
  y = local.Block (x, w)
}
<domain: "local", opset_import: ["" : 18]>
Block (a, w) => (b) {
  c = Conv <pads = [1,1,1,1]> (a, w)
  ax = Constant <value = int64[1] {1}> ()
  b = ReduceMean (c, ax)
}
""")
    result = analyze(load_model(model))
    assert result.totals.macs == 16 * 16 * 8 * 8 * 9
    assert any("1 call of model-local functions inlined" in warning for warning in result.warnings)


def test_function_default_attribute_survives_inlining(tmp_path, run_cli):
    """onnx's inliner drops a function's default (Block's alpha 0.1) when a call omits it: segcost binds it first,
    so the loaded graph runs as onnxruntime runs the functions and `optimize` passes its own numeric check."""
    import onnxruntime as ort

    from segcost.ir.onnx_io import to_model

    model = onnx.parser.parse_model(MODEL)
    graph = load_model(model)
    alphas = sorted(node.attrs["alpha"] for node in graph.nodes.values() if node.op_type == "LeakyRelu")
    assert alphas == pytest.approx([0.1, 0.5])   # the second call omits alpha: the function's 0.1, not 0.01
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32),
             "w": np.random.default_rng(1).standard_normal((8, 8, 3, 3)).astype(np.float32)}
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    loaded = ort.InferenceSession(to_model(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(loaded.run(None, feeds)[0], expected[0], rtol=1e-5, atol=1e-5)
    assert len(model.graph.node[1].attribute) == 0   # the caller's model is kept
    onnx.save_model(model, tmp_path / "f.onnx")
    code, out, err = run_cli("optimize", str(tmp_path / "f.onnx"), "-o", str(tmp_path / "o.onnx"))
    assert code == 0 and "onnxruntime check" in out, err
