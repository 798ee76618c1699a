"""Constant nodes are constants everywhere; shared initializers stay one initializer."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.ir.onnx_io import to_model
from segcost.passes import FoldConstantsPass, FuseConvBatchNormPass
from segcost.pipeline import optimize
from tests.passes.helpers import assert_same_outputs, load, op_types


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _bn_inits(prefix: str, channels: int, rng) -> list:
    values = (rng.uniform(0.5, 1.5, channels), rng.standard_normal(channels), rng.standard_normal(channels),
              rng.uniform(0.5, 2, channels))
    return [numpy_helper.from_array(value.astype(np.float32), f"{prefix}{name}")
            for name, value in zip(("gamma", "beta", "mean", "var"), values)]


def _bn(prefix: str, source: str, output: str):
    return helper.make_node("BatchNormalization", [source, *(f"{prefix}{name}" for name in ("gamma", "beta", "mean",
                                                                                               "var"))],
                            [output], name=f"{prefix}bn")


def test_constant_weight_over_65536_elements_fuses_with_batchnorm():
    """A 64×128×3×3 (73,728-element) weight in a Constant node is as constant as an initializer."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 128, 3, 3)).astype(np.float32)
    assert weight.size > 65536
    nodes = [helper.make_node("Constant", [], ["w"], name="w_const", value=numpy_helper.from_array(weight)),
             helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             _bn("", "c", "y")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128, 6, 6])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], _bn_inits("", 64, rng))
    before, graph = load(model), load(model)
    result = FuseConvBatchNormPass()(graph)
    assert result.modified, result.notes
    assert op_types(graph) == ["Conv"]
    assert_same_outputs(model, before, graph, rtol=1e-4)
    # analysis counts the Constant's value as params of its consumer, as for an initializer
    assert analyze(before).totals.params == weight.size + 4 * 64


@pytest.mark.parametrize("attribute, value, expected", [
    ("value_float", 2.5, np.array(2.5, np.float32)),
    ("value_floats", [1.0, 2.0], np.array([1.0, 2.0], np.float32)),
    ("value_int", 7, np.array(7, np.int64)),
    ("value_ints", [1, -1], np.array([1, -1], np.int64)),
])
def test_every_dense_constant_form_reads_as_an_initializer(attribute, value, expected):
    nodes = [helper.make_node("Constant", [], ["k"], name="k", **{attribute: value}),
             helper.make_node("Cast", ["k"], ["kf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "kf"], ["y"], name="op")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    graph = load(model)
    assert graph.is_constant("k") and "k" not in op_types(graph)
    np.testing.assert_array_equal(graph.initializers["k"].array, expected)
    assert_same_outputs(model, load(model), graph)   # the exported model computes the same


def test_identity_shared_initializer_is_not_duplicated_by_optimize():
    """Two convs share W, one through an Identity (as tied weights are exported): params stay put."""
    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "W")
    nodes = [helper.make_node("Identity", ["W"], ["W_tied"], name="tie"),
             helper.make_node("Conv", ["x", "W"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "W_tied"], ["y"], name="conv_b", pads=[1, 1, 1, 1])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 5])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    graph = load(model)
    result = optimize(graph)
    assert result.after.totals.params == result.before.totals.params == 8 * 8 * 9
    assert list(result.graph.initializers) == ["W"]
    exported = to_model(result.graph)
    assert [init.name for init in exported.graph.initializer] == ["W"]
    assert_same_outputs(model, load(model), result.graph)


def test_sparse_constant_folds_to_a_dense_initializer():
    values = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "values")
    indices = numpy_helper.from_array(np.array([1, 6], np.int64), "indices")
    sparse = helper.make_sparse_tensor(values, indices, [2, 4])
    nodes = [helper.make_node("Constant", [], ["k"], name="k", sparse_value=sparse),
             helper.make_node("Add", ["x", "k"], ["y"], name="add")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    graph = load(model)
    assert FoldConstantsPass()(graph).modified and graph.is_constant("k")
    np.testing.assert_array_equal(graph.initializers["k"].array, [[0, 1, 0, 0], [0, 0, 2, 0]])
