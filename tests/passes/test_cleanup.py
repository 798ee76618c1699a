"""No-op removal, dead-node elimination and constant folding of exporter shape chains."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from segcost.passes import EliminateDeadNodesPass, EliminateNoOpsPass, FoldConstantsPass, PassManager
from tests.passes.helpers import assert_same_outputs, load, op_types


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _x(shape=(1, 4, 6, 8)):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))


def _y(name="y"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def test_identity_and_dropout_removed_and_output_name_kept():
    model = _model([helper.make_node("Identity", ["x"], ["a"], name="id1"),
                    helper.make_node("Relu", ["a"], ["b"], name="relu"),
                    helper.make_node("Dropout", ["b"], ["c"], name="drop"),
                    helper.make_node("Identity", ["c"], ["y"], name="id2")], [_x()], [_y()])
    before, graph = load(model), load(model)
    result = EliminateNoOpsPass()(graph)
    assert result.modified and op_types(graph) == ["Relu"]
    assert graph.node("relu").outputs == ["y"] and graph.outputs == ["y"]
    assert_same_outputs(model, before, graph)
    assert not EliminateNoOpsPass()(graph).modified


def test_identity_from_graph_input_to_output_stays():
    model = _model([helper.make_node("Identity", ["x"], ["y"], name="id")], [_x()], [_y()])
    graph = load(model)
    assert not EliminateNoOpsPass()(graph).modified and op_types(graph) == ["Identity"]


def test_dead_nodes_and_initializers_removed():
    unused = numpy_helper.from_array(np.ones(3, np.float32), "unused")
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="live"),
                    helper.make_node("Sigmoid", ["x"], ["dead1"], name="dead1"),
                    helper.make_node("Neg", ["dead1"], ["dead2"], name="dead2")], [_x()], [_y()], [unused])
    graph = load(model)
    result = EliminateDeadNodesPass()(graph)
    assert result.modified and op_types(graph) == ["Relu"] and "unused" not in graph.initializers
    assert not EliminateDeadNodesPass()(graph).modified


def test_shape_chain_folds_into_constant_reshape():
    """Shape → Gather → Unsqueeze → Concat → Reshape, as a training-mode export writes it."""
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    model = _model([helper.make_node("Shape", ["x"], ["shape"], name="shape"),
                    helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
                    helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"], name="unsqueeze"),
                    helper.make_node("Concat", ["batch1", "minus_one"], ["target"], name="concat", axis=0),
                    helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape")], [_x()], [_y()], inits)
    before, graph = load(model), load(model)
    result = PassManager([FoldConstantsPass(), EliminateDeadNodesPass()], fixed_point=True)(graph)
    assert op_types(result.graph) == ["Reshape"]
    np.testing.assert_array_equal(graph.initializers["target"].array, [1, -1])
    assert_same_outputs(model, before, result.graph)


def test_fold_keeps_graph_outputs_and_symbolic_shapes():
    model = _model([helper.make_node("Shape", ["x"], ["y"], name="shape")], [_x(("N", 4, 6, 8))],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, [4])])
    graph = load(model.__class__.FromString(model.SerializeToString()))  # symbolic N: nothing to fold
    assert not FoldConstantsPass()(graph).modified


def test_small_constant_of_shape_still_folds_under_the_size_bound():
    inits = [numpy_helper.from_array(np.array([4], np.int64), "s")]
    model = _model([helper.make_node("ConstantOfShape", ["s"], ["c"], name="fill"),
                    helper.make_node("Add", ["x", "c"], ["y"], name="use")], [_x((4,))], [_y()], inits)
    graph = load(model)
    assert FoldConstantsPass()(graph).modified and op_types(graph) == ["Add"]
    assert graph.initializers["c"].shape == (4,)


def test_folding_bypasses_identity_of_a_constant_without_copying_it():
    """Constant shape → Identity → Reshape: the chain resolves, and the shape stays one initializer."""
    inits = [numpy_helper.from_array(np.array([1, -1], np.int64), "target")]
    model = _model([helper.make_node("Identity", ["target"], ["target_alias"], name="alias"),
                    helper.make_node("Reshape", ["x", "target_alias"], ["y"], name="reshape")], [_x()], [_y()],
                   inits)
    graph = load(model)
    assert FoldConstantsPass()(graph).modified and op_types(graph) == ["Reshape"]
    assert graph.node("reshape").inputs == ["x", "target"] and list(graph.initializers) == ["target"]


def test_shape_and_size_values_are_exact_and_shared_with_shape_resolution():
    """passes.cleanup folds Shape/Size with the same function shape resolution evaluates them with."""
    from segcost.shapes.evaluate import shape_op_value

    assert shape_op_value("Shape", (1, 4, 6, 8), -3, -1).tolist() == [4, 6]   # opset-15 start/end, from the back
    assert shape_op_value("Shape", (1, 4), 1, 99).tolist() == [4]              # out of range clamps
    assert shape_op_value("Size", (1, 4, 6, 8)).item() == 192
    assert shape_op_value("Size", (1 << 40, 1 << 40)) is None                  # int64 would wrap to 0
    assert shape_op_value("Shape", (1, -1)) is None and shape_op_value("Size", (1, "N")) is None


def test_size_that_overflows_int64_is_not_folded():
    model = _model([helper.make_node("Size", ["x"], ["n"], name="size"),
                    helper.make_node("Cast", ["n"], ["y"], name="cast", to=TensorProto.FLOAT)],
                   [_x((1 << 40, 1 << 40))], [_y()])
    graph = load(model)
    FoldConstantsPass(infer=False)(graph)
    assert "n" not in graph.initializers and op_types(graph) == ["Size", "Cast"]


def test_folding_uses_the_shape_chain_evaluator_before_onnx_reference(monkeypatch):
    """Concat/Div/Gather of initializers fold through shapes.values (numpy, exact as onnxruntime):
    one evaluator for the loader and the pass; onnx.reference is only for the ops it refuses."""
    import onnx.reference

    def refuse(*args, **kwargs):
        raise AssertionError("onnx.reference used for ops shapes.values evaluates")

    monkeypatch.setattr(onnx.reference, "ReferenceEvaluator", refuse)
    inits = [numpy_helper.from_array(np.array(values, np.int64), name)
             for name, values in (("a", [2, 8]), ("b", [96]), ("two", [2]), ("pick", [0, 1, 2]))]
    model = _model([helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=0),
                    helper.make_node("Div", ["c", "two"], ["d"], name="div"),
                    helper.make_node("Gather", ["d", "pick"], ["e"], name="gather", axis=0),
                    helper.make_node("Reshape", ["x", "e"], ["y"], name="reshape")], [_x()], [_y()], inits)
    before, graph = load(model), load(model)
    result = FoldConstantsPass()(graph)
    assert result.modified and op_types(graph) == ["Reshape"]
    assert graph.initializers[graph.node("reshape").inputs[1]].array.tolist() == [1, 4, 48]
    assert_same_outputs(model, before, graph)
