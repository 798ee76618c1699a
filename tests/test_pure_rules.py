"""Pure cost rules are computed once per signature; the analysis must equal one computed node by node."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze, registry
from segcost.analyzer.registry import cost_rule, is_pure_rule
from segcost.frontends.onnx import load_model
from segcost.ir import TensorInfo
from segcost.samples import deeplabv3lite


def _weight(name: str, shape: tuple[int, ...]):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def _repeats_model():
    """Layers that share every signature part but one: attributes, given inputs, constness, shapes."""
    inits = [_weight("w", (4, 4, 3, 3)), _weight("w2", (4, 4, 3, 3)), _weight("b", (4,)), _weight("k", (1, 4, 8, 8))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c1"], name="same_pads", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="same_pads_again", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c2", "w", "b"], ["c3"], name="with_bias", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c3", "w"], ["c4"], name="auto_pad", auto_pad="SAME_UPPER"),
        helper.make_node("Conv", ["c4", "w", ""], ["c5"], name="omitted_bias", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c5", "c4"], ["a1"], name="add_activations"),
        helper.make_node("Add", ["a1", "k"], ["a2"], name="add_constant"),
        helper.make_node("Sum", ["a2", "a1", "c1"], ["s"], name="sum3"),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(nodes, "repeats", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _dtypes_model():
    """Layers equal in all but their tensors' element type (their activation bytes differ), and weights of
    one shape read once and twice (no Cast: a forwarder, which turns the walk's cache by tensor kinds off)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r1"], name="relu_f32"),
        helper.make_node("Relu", ["x16"], ["r2"], name="relu_f16"),
        helper.make_node("Relu", ["r2"], ["r3"], name="relu_f16_again"),
        helper.make_node("Add", ["r1", "k"], ["a1"], name="add_k"),
        helper.make_node("Add", ["a1", "k"], ["a2"], name="add_k_again"),
        helper.make_node("Add", ["a2", "k2"], ["y"], name="add_k2"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
              helper.make_tensor_value_info("x16", TensorProto.FLOAT16, [1, 4, 8, 8])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8]),
               helper.make_tensor_value_info("r3", TensorProto.FLOAT16, [1, 4, 8, 8])]
    graph = helper.make_graph(nodes, "dtypes", inputs, outputs,
                              initializer=[_weight("k", (1, 4, 8, 8)), _weight("k2", (1, 4, 8, 8))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("model", [_repeats_model(), _dtypes_model(),
                                   deeplabv3lite(width=0.35, num_classes=3, height=32, width_px=32)])
def test_reusing_pure_results_changes_nothing(model, monkeypatch):
    reused = analyze(load_model(model)).to_dict()
    # the module, not the function of the same name segcost.analyzer exports
    walk_module = importlib.import_module("segcost.analyzer.analyze")
    monkeypatch.setattr(walk_module, "is_pure_rule", lambda domain, op_type: False)
    assert analyze(load_model(model)).to_dict() == reused


def test_conv_and_elementwise_rules_are_pure_and_operand_readers_are_not():
    assert is_pure_rule("", "Conv") and is_pure_rule("", "Add") and is_pure_rule("", "Relu")
    for op_type in ("Resize", "Reshape", "Clip", "Softmax", "TopK", "If"):
        assert not is_pure_rule("", op_type)


def test_a_checked_op_reading_constant_operands_is_never_pure(monkeypatch):
    """Resize's degenerate-operand check reads its scales' values, so its result depends on more than shapes."""
    monkeypatch.setattr(registry, "_RULES", dict(registry._RULES))
    monkeypatch.setattr(registry, "_PURE", set(registry._PURE))
    cost_rule("Resize", domains=("test.pure",), pure=True)(lambda op: None)
    assert not is_pure_rule("test.pure", "Resize")


def test_a_weight_also_typed_as_a_tensor_is_walked_without_the_kind_cache(monkeypatch):
    """A graph whose tensor table holds an initializer (not so for a loaded one) gives the same layers
    with and without reused results (analyzer.tables turns the kind table off for it)."""
    def loaded():
        graph = load_model(_repeats_model())
        graph.tensors["k"] = TensorInfo("k", TensorProto.FLOAT, (1, 4, 8, 8))
        return graph

    reused = analyze(loaded()).to_dict()
    walk_module = importlib.import_module("segcost.analyzer.analyze")
    monkeypatch.setattr(walk_module, "is_pure_rule", lambda domain, op_type: False)
    assert analyze(loaded()).to_dict() == reused
