"""`segcost diff`: a layer of the same name and op type in both models is one changed row, never added + removed."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.budget.diff import diff_analyses
from segcost.frontends.onnx import load_model


def _conv_resize(folded: bool) -> onnx.ModelProto:
    """x[1,3,8,8] -> Conv "conv" -> Mul "up" by a per-channel scale. `folded`: the scale is a float initializer
    the Mul reads (params 4), as after constant folding; else it is computed (GlobalAveragePool "shape", then
    "compute_sizes" multiplies by a weight, params 4), so "up" reads no constant (0 MACs, 0 params). (It was a
    Resize whose int64 output sizes were folded; those are not params since the params convention reads
    integer shapes as no weights.)"""
    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv")]
    if folded:
        constants = [numpy_helper.from_array(np.full((1, 4, 1, 1), 2, np.float32), "sizes")]
    else:
        constants = [numpy_helper.from_array(np.full((1, 4, 1, 1), 2, np.float32), "factor")]
        nodes += [helper.make_node("GlobalAveragePool", ["c"], ["shape"], name="shape"),
                  helper.make_node("Mul", ["shape", "factor"], ["sizes"], name="compute_sizes")]
    nodes.append(helper.make_node("Mul", ["c", "sizes"], ["y"], name="up"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [weight, *constants])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_layer_in_both_models_is_a_change_even_when_one_side_has_no_counts():
    a, b = analyze(load_model(_conv_resize(False))), analyze(load_model(_conv_resize(True)))
    up_a = next(layer for layer in a.layers if layer.name == "up")
    up_b = next(layer for layer in b.layers if layer.name == "up")
    assert (up_a.macs, up_a.params) == (0, 0) and up_b.params == 4   # the case: counted only in B
    rows = {(change.name_a, change.name_b): change for change in diff_analyses(a, b).changes}
    assert ("up", "up") in rows and rows["up", "up"].matched_by == "name"
    assert (rows["up", "up"].params_a, rows["up", "up"].params_b) == (0, 4)
    # the only other row: A's size computation, which B no longer has
    assert {key: row.matched_by for key, row in rows.items() if key != ("up", "up")} == \
        {("conv", "conv"): "name", ("compute_sizes", None): "removed"}
    # and in the other direction: the layer loses its params
    back = {(change.name_a, change.name_b): change.matched_by for change in diff_analyses(b, a).changes}
    assert back == {("conv", "conv"): "name", ("up", "up"): "name", (None, "compute_sizes"): "added"}


def test_a_layer_without_counts_in_both_is_still_left_out(run_cli, tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(_conv_resize(False), a)
    onnx.save(_conv_resize(False), b)
    code, out, err = run_cli("diff", str(a), str(b), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["changes"] == []
    onnx.save(_conv_resize(True), b)
    code, out, err = run_cli("diff", str(a), str(b), "--format", "json")
    changes = json.loads(out)["changes"]
    assert code == 0 and [(change["name_a"], change["name_b"]) for change in changes] == \
        [("up", "up"), ("compute_sizes", None)], changes
