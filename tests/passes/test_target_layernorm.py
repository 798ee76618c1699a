"""LayerNorm on TIDL: the opset-17 single op and the opset-13 sequence of the same network place alike.

breaker11 F4: torch exports nn.LayerNorm as ReduceMean-Sub-Pow-ReduceMean-Add-Sqrt-Div at opset < 17 and as
one LayerNormalization op at opset >= 17. TI's SDK 11.00 table (rule set "current") supports both over the
width axis only: row 29 "LayerNormalization | TIDL_LayerNormLayer | ... Only supported across the width axis"
and fused row 1 (ReduceMean, "Supported as part of the fused combination of Layernorm").
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.passes import VerifyGroupedConvPass
from tests.passes.helpers import load

C, H, W = 16, 16, 16


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _norm_nodes(opset: int, axis: int) -> list:
    """x_t -> normalized n, as torch's exporter writes nn.LayerNorm at `opset` (γ, β: "g", "b")."""
    if opset >= 17:
        return [helper.make_node("LayerNormalization", ["x_t", "g", "b"], ["n"], name="ln", axis=axis, epsilon=1e-5)]
    return [helper.make_node("ReduceMean", ["x_t"], ["mean"], name="mean", axes=[axis]),
            helper.make_node("Sub", ["x_t", "mean"], ["d"], name="sub"),
            helper.make_node("Pow", ["d", "two"], ["sq"], name="pow"),
            helper.make_node("ReduceMean", ["sq"], ["var"], name="var", axes=[axis]),
            helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
            helper.make_node("Sqrt", ["ve"], ["std"], name="sqrt"),
            helper.make_node("Div", ["d", "std"], ["z"], name="div"),
            helper.make_node("Mul", ["z", "g"], ["zg"], name="gamma"),
            helper.make_node("Add", ["zg", "b"], ["n"], name="beta")]


def _network(opset: int, channels_last: bool = True):
    """Conv -> [permute to NHWC] -> LayerNorm over the last axis (or over C..W of NCHW) -> [permute back] -> Conv."""
    axis = -1 if channels_last else 1
    param_shape = (C,) if channels_last else (C, H, W)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1])]
    nodes.append(helper.make_node("Transpose", ["c1"], ["x_t"], name="to_nhwc", perm=[0, 2, 3, 1]) if channels_last
                 else helper.make_node("Identity", ["c1"], ["x_t"], name="same"))
    nodes += _norm_nodes(opset, axis)
    nodes.append(helper.make_node("Transpose", ["n"], ["n_t"], name="to_nchw", perm=[0, 3, 1, 2]) if channels_last
                 else helper.make_node("Identity", ["n"], ["n_t"], name="back"))
    nodes.append(helper.make_node("Conv", ["n_t", "w2"], ["y"], name="conv2"))
    inits = [_const("w1", np.ones((C, 3, 3, 3))), _const("w2", np.ones((8, C, 1, 1))),
             _const("g", np.ones(param_shape)), _const("b", np.zeros(param_shape))]
    if opset < 17:
        inits += [_const("two", 2.0), _const("eps", 1e-5)]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, H, W])],
                              [helper.make_empty_tensor_value_info("y")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _findings(model, rules="current"):
    return sorted((f.layer, f.rule) for f in VerifyGroupedConvPass(rules=rules, lite=False)(load(model)).findings)


def _placements(model):
    from segcost.pipeline import estimate_on_target

    result = estimate_on_target(load(model), "tda4vm", fuse=False)
    return {layer.name: layer.placement for layer in result.layers}


@pytest.mark.parametrize("rules", ["current", "tvm-tidl"])
def test_layernorm_over_the_width_axis_runs_in_both_export_forms(rules):
    assert _findings(_network(13), rules) == _findings(_network(17), rules) == []


def test_opset_13_and_17_exports_place_alike_on_tda4vm():
    old, new = _placements(_network(13)), _placements(_network(17))
    assert set(old.values()) == set(new.values()) == {"accelerator"}
    for name in ("conv1", "conv2", "to_nhwc", "to_nchw"):
        assert old[name] == new[name]


def test_layernorm_over_the_channel_axis_is_a_finding_in_both_forms():
    # axis 1 of NCHW normalizes C, H and W: not TI's width-axis layer, whichever form the exporter wrote
    single = _findings(_network(17, channels_last=False))
    # and scale, bias of shape [C, H, W]: not [N] or [1, N]
    assert single == [("ln", "layernorm-axis"), ("ln", "layernorm-params"), ("ln", "layernorm-params")]
    sequence = _findings(_network(13, channels_last=False))
    assert {layer for layer, rule in sequence} >= {"mean", "var", "sub"}
    old, new = _placements(_network(13, channels_last=False)), _placements(_network(17, channels_last=False))
    assert new["ln"] != "accelerator" and old["mean"] != "accelerator" and old["var"] != "accelerator"


@pytest.mark.parametrize("axis,shape,expected", [
    (-1, (1, 4, 8, 8), []), (3, (1, 4, 8, 8), []),          # the width axis, written either way
    (2, (1, 4, 8, 8), ["layernorm-axis", "layernorm-params"]),   # H and W together (scale [H, W])
    (-1, (1, 197, 192), []),                                 # a transformer's tokens
    (1, (1, 197, 192), ["layernorm-axis", "layernorm-params"]),
])
def test_layernorm_axis(axis, shape, expected):
    param = _const("g", np.ones(shape[axis:]))      # ONNX: scale has the normalized shape
    node = helper.make_node("LayerNormalization", ["x", "g"], ["y"], name="ln", axis=axis)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_empty_tensor_value_info("y")], initializer=[param])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert [rule for _, rule in _findings(model)] == expected
    assert [rule for _, rule in _findings(model, "legacy")] == ["unsupported-op"]   # not in the SDK 9.2 table


def test_variable_dims_limit():
    # SDK 11.00: "Number of non-singleton variable input dimensions must be less than <= 6" (Relu, row 3)
    def relu(shape):
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                                  [helper.make_empty_tensor_value_info("y")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model

    assert _findings(relu((2, 2, 2, 2, 2, 2, 2))) == [("relu", "variable-dims")]
    assert _findings(relu((1, 2, 2, 2, 2, 2, 2))) == []     # six non-singleton dims
    assert _findings(relu((2, 2, 2, 2, 2, 2, 2)), "legacy") == []   # the SDK 9.2 table states no such limit


def test_loader_refuses_a_malformed_dims_table(monkeypatch):
    from segcost.errors import InputError
    from segcost.passes import target_rules

    table = target_rules._rules_file()
    sets = dict(table["rulesets"])
    sets["tidl-11.00"] = {**sets["tidl-11.00"], "max_variable_dims": {"Relu": "six"}}
    monkeypatch.setattr(target_rules, "_rules_file", lambda: {**table, "rulesets": sets})
    target_rules.load_rules.cache_clear()
    try:
        with pytest.raises(InputError, match="max_variable_dims"):
            target_rules.load_rules("current")
    finally:
        monkeypatch.undo()
        target_rules.load_rules.cache_clear()
