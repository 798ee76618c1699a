"""Constant folding never makes the model larger than the constants it replaces (beyond a small allowance).

HF BEiT / Data2VecVision exports compute their relative-position index at run time from a few
scalars: Range → Unsqueeze → Sub over patch pairs, a ConstantOfShape table, ScatterND into it.
Folded, those became int64 initializers and the written model doubled. The model built here is
that computation in small (64 patches: a 64×65 int64 Sub, a 65×65 ConstantOfShape), feeding a
Gather from a learned bias table, plus an exporter shape chain that must still fold.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segcost.passes import FoldConstantsPass
from segcost.pipeline import optimize
from tests.passes.helpers import assert_same_outputs, load, op_types

PATCHES = 64


def _int64(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, np.int64), name)


def _relative_bias_model() -> onnx.ModelProto:
    """y = Reshape(x + table[index], [batch, -1]); index from Range/Sub/ConstantOfShape/ScatterND; batch by Shape."""
    side = PATCHES + 1
    table = np.random.default_rng(0).standard_normal(2 * PATCHES + 1).astype(np.float32)
    inits = [_int64("zero", 0), _int64("one", 1), _int64("patches", PATCHES), _int64("side", side),
             _int64("offset", PATCHES), _int64("axis0", [0]), _int64("axis1", [1]), _int64("grid", [side, side]),
             _int64("minus_one", [-1]), numpy_helper.from_array(table, "table")]
    nodes = [
        # relative index of every (row, column) pair: rows 1..64 of a 65×65 table, as BEiT's [1:, 1:]
        helper.make_node("Range", ["one", "side", "one"], ["rows"], name="rows"),             # [64]
        helper.make_node("Range", ["zero", "side", "one"], ["cols"], name="cols"),            # [65]
        helper.make_node("Unsqueeze", ["rows", "axis1"], ["rows2"], name="rows2"),           # [64, 1]
        helper.make_node("Unsqueeze", ["cols", "axis0"], ["cols2"], name="cols2"),           # [1, 65]
        helper.make_node("Sub", ["rows2", "cols2"], ["relative"], name="relative"),          # [64, 65]
        helper.make_node("Add", ["relative", "offset"], ["shifted"], name="shifted"),
        helper.make_node("ConstantOfShape", ["grid"], ["blank"], name="blank",
                         value=numpy_helper.from_array(np.zeros(1, np.int64))),              # [65, 65]
        helper.make_node("ScatterND", ["blank", "rows2", "shifted"], ["index"], name="scatter"),
        helper.make_node("Gather", ["table", "index"], ["bias"], name="bias"),               # [65, 65] float
        helper.make_node("Add", ["x", "bias"], ["biased"], name="add_bias"),
        # exporter shape chain: Shape → Gather → Unsqueeze → Concat → Reshape target
        helper.make_node("Shape", ["x"], ["x_shape"], name="shape"),
        helper.make_node("Gather", ["x_shape", "zero"], ["batch"], name="batch", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axis0"], ["batch1"], name="batch1"),
        helper.make_node("Concat", ["batch1", "minus_one"], ["target"], name="target", axis=0),
        helper.make_node("Reshape", ["biased", "target"], ["y"], name="flatten"),
    ]
    graph = helper.make_graph(nodes, "relative_bias",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, side, side])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, side * side])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _initializer_bytes(graph) -> int:
    return sum(initializer.nbytes for initializer in graph.initializers.values())


def test_optimize_does_not_grow_an_index_computation_and_still_folds_the_shape_chain():
    model = _relative_bias_model()
    before, graph = load(model), load(model)
    result = optimize(graph)
    # The one growth allowed: the shape chain's target [2, -1] (16 bytes) replaces the constant [-1]
    # (8 bytes); x's Shape is a constant made from nothing. Folding the index computation was +66 KB.
    assert result.after.totals.params <= result.before.totals.params + 1
    assert result.after.totals.weight_bytes <= result.before.totals.weight_bytes + 8
    assert _initializer_bytes(graph) <= _initializer_bytes(before) + 8
    # the index computation stays nodes; the shape chain became the constant [2, -1]
    kept = op_types(graph)
    assert {"Sub", "ConstantOfShape", "ScatterND"} <= set(kept)
    assert not {"Shape", "Concat"} & set(kept)
    target = graph.node("flatten").inputs[1]
    np.testing.assert_array_equal(graph.initializers[target].array, [2, -1])
    notes = [note for record in result.records if record.name == "fold-constants" for note in record.notes]
    for refused in ("rows (Range)", "blank (ConstantOfShape)"):
        assert any(note.startswith(f"not folded (grows the model) {refused}") for note in notes), notes
    assert any(note.startswith("kept ") for note in notes), notes
    assert_same_outputs(model, before, graph)


def _matmul_model(nodes: list[onnx.NodeProto], weight: np.ndarray) -> onnx.ModelProto:
    """`nodes` over input x [4, 32] (float) and the initializer w = `weight`, to output y."""
    graph_proto = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
                                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                    initializer=[numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_fold_that_copies_a_shared_weight_stays_a_node():
    """Transpose of a weight another layer also reads: folding would store the weight twice."""
    weight = np.random.default_rng(1).standard_normal((32, 32)).astype(np.float32)   # 4 KiB
    nodes = [helper.make_node("Transpose", ["w"], ["w_t"], name="transpose", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "w"], ["a"], name="mm_a"),
             helper.make_node("MatMul", ["a", "w_t"], ["y"], name="mm_b")]
    model = _matmul_model(nodes, weight)
    before, graph = load(model), load(model)
    result = FoldConstantsPass()(graph)
    assert not result.modified and "transpose" in graph.dag
    assert any("transpose (Transpose)" in note and "4,096 bytes" in note for note in result.notes), result.notes
    assert_same_outputs(model, before, graph)


def test_fold_that_only_reshapes_its_own_input_folds():
    """The same weight read by the Transpose alone: the result replaces it byte for byte."""
    weight = np.random.default_rng(2).standard_normal((32, 32)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["w"], ["w_t"], name="transpose", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "w_t"], ["y"], name="mm")]
    model = _matmul_model(nodes, weight)
    before, graph = load(model), load(model)
    assert FoldConstantsPass()(graph).modified and op_types(graph) == ["MatMul"]
    assert_same_outputs(model, before, graph)


def test_growth_allowance_boundary():
    from segcost.passes.fold_size import MAX_FOLD_GROWTH_BYTES, fold_growth  # here: the other tests run on old code

    assert fold_growth(MAX_FOLD_GROWTH_BYTES + 8, 8) is None
    assert fold_growth(MAX_FOLD_GROWTH_BYTES + 9, 8) == MAX_FOLD_GROWTH_BYTES + 1
    assert fold_growth(64, 0) is None   # a rank-8 shape vector from nothing


def test_growing_fold_is_refused_before_its_result_is_allocated(monkeypatch):
    """A 16 MiB Expand (under the 64 MiB per-tensor bound) from 24 bytes: refused without evaluating it."""
    from segcost.passes import cleanup

    inits = [numpy_helper.from_array(np.ones(1, np.int64), "one"), _int64("shape", [2048, 1024])]
    nodes = [helper.make_node("Expand", ["one", "shape"], ["table"], name="table"),
             helper.make_node("Add", ["x", "table"], ["y"], name="use")]
    graph_proto = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.INT64, [1])],
                                    [helper.make_tensor_value_info("y", TensorProto.INT64, None)], initializer=inits)
    model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    asked = []
    monkeypatch.setattr(cleanup, "_evaluate_node", lambda node, feeds, opset: asked.append(node.op_type))
    graph = load(model)
    result = FoldConstantsPass()(graph)
    assert not asked and not result.modified and "table" in graph.dag
    assert any(note.startswith("not folded (grows the model) table (Expand): its result of at least")
               for note in result.notes), result.notes


def test_costed_graph_still_folds_what_the_written_model_keeps():
    """target_pipeline (analyze --target, cost, verify) models the runtime, which folds constant subgraphs."""
    from segcost.pipeline import target_pipeline

    graph = load(_relative_bias_model())
    kept = set(op_types(target_pipeline(graph)))
    assert not {"Range", "Sub", "ConstantOfShape", "Shape"} & kept, kept
    assert "ScatterND" in kept   # not a foldable op
