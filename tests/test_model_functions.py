"""Model-local functions (torch.onnx.export(export_modules_as_functions=...)) are inlined at load."""

from __future__ import annotations

import onnx.parser

from segcost.analyzer import analyze
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

