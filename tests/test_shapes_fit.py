"""Ops whose output shape constants fix must fit their input (segcost.shapes.fit): a size baked into an export
and analyzed at another is a ShapeError naming the op, never a silently wrong count (onnx inference checks none)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.errors import ShapeError
from segcost.frontends.onnx import load_model


def _ints(name, *values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _patch_model(tail_nodes, inits=(), out=("y",)) -> onnx.ModelProto:
    """x [1,3,32,32] → Conv 4×4 stride 4 → c [1,16,8,8] → tail_nodes (exported at 32×32)."""
    weight = numpy_helper.from_array(np.ones((16, 3, 4, 4), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[4, 4], name="patch"), *tail_nodes]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in out],
                              [weight, *inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


CASES = {
    # a Reshape target from a shape chain with a constant tail: Concat(Shape(c)[0:1], [16, 64])
    "Reshape": _patch_model([helper.make_node("Shape", ["c"], ["s"]), helper.make_node("Slice", ["s", "z", "o"], ["b"]),
                             helper.make_node("Concat", ["b", "tail"], ["t"], axis=0),
                             helper.make_node("Reshape", ["c", "t"], ["r"], name="flatten"),
                             helper.make_node("MatMul", ["r", "m"], ["y"], name="mix")],
                            [_ints("z", 0), _ints("o", 1), _ints("tail", 16, 64),
                             numpy_helper.from_array(np.ones((64, 64), np.float32), "m")]),
    "Expand": _patch_model([helper.make_node("Expand", ["c", "shape"], ["e"], name="expand"),
                            helper.make_node("Relu", ["e"], ["y"])], [_ints("shape", 1, 16, 8, 8)]),
    "Split": _patch_model([helper.make_node("Split", ["c", "sizes"], ["a", "b"], axis=2, name="split"),
                           helper.make_node("Add", ["a", "b"], ["y"])], [_ints("sizes", 4, 4)]),
    "SpaceToDepth": _patch_model([helper.make_node("SpaceToDepth", ["c"], ["y"], blocksize=8, name="s2d")]),
}


@pytest.mark.parametrize("op_type", sorted(CASES))
def test_an_op_with_a_baked_size_fits_at_the_export_size(op_type):
    assert analyze(load_model(CASES[op_type])).coverage.unsupported == []


@pytest.mark.parametrize("op_type", sorted(CASES))
def test_an_op_with_a_baked_size_refuses_another_input_size(op_type):
    with pytest.raises(ShapeError) as caught:
        load_model(CASES[op_type], input_shapes={"x": (1, 3, 48, 48)})
    message = str(caught.value)
    assert f"({op_type})" in message and "exported for x=1x3x32x32 (given: x=1x3x48x48)" in message


def test_depth_to_space_needs_channels_divisible_by_the_block_area():
    model = _patch_model([helper.make_node("DepthToSpace", ["c"], ["y"], blocksize=3, name="d2s")])
    with pytest.raises(ShapeError, match=r"'d2s' \(DepthToSpace\).*blocksize² = 9"):
        load_model(model)


def test_a_reshape_that_keeps_the_element_count_at_another_size_is_fine():
    # [-1, 16, 8, 8] at 64×64: 4·16·8·8 elements — a valid Reshape (the batch grows), as onnxruntime runs it
    model = _patch_model([helper.make_node("Reshape", ["c", "t"], ["y"], name="flatten")], [_ints("t", -1, 16, 8, 8)])
    graph = load_model(model, input_shapes={"x": (1, 3, 64, 64)})
    assert graph.shape("y") == (4, 16, 8, 8)
