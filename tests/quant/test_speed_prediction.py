"""The int8 speed prediction costs one copy of the int8 graph, whatever the batch (issue 19 review)."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

import segcost.frontends.onnx as onnx_frontend
from segcost.pipeline import optimize, static_view
from segcost.quant.quantize import QuantizeOptions, quantize_graph
from segcost.quant.speed import predict


def _model(qm, batch):
    b = qm.Builder()
    x = b.conv("x", "input", 3, 8, kernel=3)
    b.op("Relu", [x], "r")
    b.conv("out", "r", 8, 4)
    graph = helper.make_graph(
        b.nodes, "m", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [batch, 4, 16, 16])], b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("batch", ["N", 1])
def test_prediction_loads_the_int8_graph_once(qm, monkeypatch, batch):
    float_graph = optimize(onnx_frontend.load_model(_model(qm, batch))).graph
    int8_graph = quantize_graph(float_graph, QuantizeOptions(calib_size=2)).graph
    static_float = static_view(float_graph)
    loads = []
    real_load = onnx_frontend.load_model
    monkeypatch.setattr(onnx_frontend, "load_model",
                        lambda *args, **kwargs: loads.append(1) or real_load(*args, **kwargs))
    report = predict(static_float, static_view(int8_graph, copy=True), "cpu")
    assert len(loads) == 1
    assert report.predicted_fp32_ms > 0 and report.predicted_int8_ms > 0
    ops = {int8_graph.node(key).op_type for key in int8_graph.topological_order()}
    assert "DequantizeLinear" in ops   # the caller's graph is intact
