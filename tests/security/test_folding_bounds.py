"""Constant folding never allocates what a tiny model describes: sizes are bounded before evaluating.

Each bomb is a few hundred bytes of ONNX whose folded result would be gigabytes. The
tests watch the evaluator instead of letting it allocate: folding must refuse before
onnx.reference is asked to build the tensor. (Under an address-space limit the old code
failed quietly inside the evaluator, so a limit alone cannot tell the two apart.)
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.ir.onnx_io import from_model
from segcost.passes import FoldConstantsPass, cleanup


def _bomb(kind: str) -> onnx.ModelProto:
    """x + (a huge constant-computable tensor); the huge part is 2-8 GiB when folded."""
    int64 = np.int64
    if kind == "ConstantOfShape":
        inits, node = [numpy_helper.from_array(np.array([1 << 29], int64), "s")], \
            helper.make_node("ConstantOfShape", ["s"], ["big"], name="bomb")
    elif kind == "Expand":
        inits = [numpy_helper.from_array(np.ones(1, np.float32), "one"),
                 numpy_helper.from_array(np.array([1 << 15, 1 << 15], int64), "s")]
        node = helper.make_node("Expand", ["one", "s"], ["big"], name="bomb")
    elif kind == "Tile":
        inits = [numpy_helper.from_array(np.ones(1 << 4, np.float32), "row"),
                 numpy_helper.from_array(np.array([1 << 26], int64), "reps")]
        node = helper.make_node("Tile", ["row", "reps"], ["big"], name="bomb")
    else:  # Range
        inits = [numpy_helper.from_array(np.array(0.0, np.float32), "start"),
                 numpy_helper.from_array(np.array(float(1 << 30), np.float32), "limit"),
                 numpy_helper.from_array(np.array(1.0, np.float32), "delta")]
        node = helper.make_node("Range", ["start", "limit", "delta"], ["big"], name="bomb")
    graph = helper.make_graph([node, helper.make_node("Add", ["x", "big"], ["y"], name="use")], "bomb",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("kind", ["ConstantOfShape", "Expand", "Tile", "Range"])
def test_folding_refuses_a_bomb_before_evaluating(kind, monkeypatch):
    model = _bomb(kind)
    assert len(model.SerializeToString()) < 4096
    asked = []

    def watch(node, feeds, opset):  # stands in for the evaluators; records, never allocates
        asked.append(node.op_type)

    monkeypatch.setattr(cleanup, "_evaluate_node", watch)
    # The IR without the loader's shape inference: onnx's own data propagation materializes
    # ConstantOfShape/Tile/Range values (that is the loader's bound, not folding's).
    graph = from_model(model)
    result = FoldConstantsPass(infer=False)(graph)
    assert kind not in asked, f"{kind} was handed to the evaluator"
    assert "bomb" in graph.dag and not result.modified
    assert any(note.startswith(f"not folded bomb ({kind})") and "MiB" in note for note in result.notes)


def test_size_bound_holds_for_small_results():
    """The predicted element count is an upper bound of (here equal to) what the op really makes."""
    from segcost.passes.fold_size import (
        result_elements,  # here, so that main's pass is what the bombs meet
    )

    cases = [
        ("ConstantOfShape", [np.array([3, 4])], {}, 12),
        ("Expand", [np.ones((3, 1)), np.array([2, 1, 4])], {}, 24),
        ("Tile", [np.ones((2, 3)), np.array([2, 5])], {}, 60),
        ("Range", [np.array(1), np.array(10), np.array(3)], {}, 3),
        ("Range", [np.array(5.0), np.array(1.0), np.array(1.0)], {}, 0),
        ("Gather", [np.ones((5, 6)), np.array([[0, 1, 1, 2]])], {"axis": 1}, 5 * 4),
        ("Add", [np.ones((4, 1)), np.ones((1, 7))], {}, 28),
        ("Concat", [np.ones(3), np.ones(4)], {"axis": 0}, 7),
    ]
    for op_type, values, attrs, expected in cases:
        assert result_elements(op_type, values, attrs) == expected, op_type
    assert result_elements("Conv", [np.ones(1)], {}) is None   # no rule: never folded
