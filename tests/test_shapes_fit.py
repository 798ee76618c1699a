"""Ops whose output shape constants fix must fit their input (segcost.shapes.fit): a size baked into an export
and analyzed at another is a ShapeError naming the op, never a silently wrong count (onnx inference checks none)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.errors import ShapeError
from segcost.frontends.onnx import load_model
from segcost.shapes.fit import _broadcast_problem, broadcast_misfit


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


def _token_model(tokens_from_chain: bool) -> onnx.ModelProto:
    """ViT embedding as torch exports it at 32×32: tokens [1, 1+64, 16] + a fixed position embedding [1, 65, 16].

    With `tokens_from_chain`, the class token is Expanded to a shape a Where chain computes, so onnx's first
    inference leaves the token count open and broadcasts it with the 65 of `pos` (shapes.evaluate computes it later).
    """
    tail = [helper.make_node("Reshape", ["c", "flat"], ["f"]),
            helper.make_node("Transpose", ["f"], ["t"], perm=[0, 2, 1])]
    inits = [_ints("flat", 1, 16, -1), numpy_helper.from_array(np.ones((1, 1, 16), np.float32), "cls"),
             numpy_helper.from_array(np.ones((1, 65, 16), np.float32), "pos"),
             numpy_helper.from_array(np.ones((16, 8), np.float32), "m")]
    if tokens_from_chain:
        tail += [helper.make_node("ConstantOfShape", ["three"], ["ones"], value=numpy_helper.from_array(
                     np.array([1], np.int64))),
                 helper.make_node("Equal", ["want", "minus"], ["eq"]),
                 helper.make_node("Where", ["eq", "ones", "want"], ["es"]),
                 helper.make_node("Expand", ["cls", "es"], ["clsb"])]
        inits += [_ints("three", 3), _ints("want", 1, -1, -1), _ints("minus", -1, -1, -1)]
    else:
        tail += [helper.make_node("Identity", ["cls"], ["clsb"])]
    tail += [helper.make_node("Concat", ["clsb", "t"], ["tok"], axis=1),
             helper.make_node("Add", ["tok", "pos"], ["e"], name="add_pos"),
             helper.make_node("MatMul", ["e", "m"], ["y"], name="mix")]
    return _patch_model(tail, inits)


@pytest.mark.parametrize("chain", [False, True], ids=["tokens_known", "tokens_computed_later"])
def test_a_baked_position_embedding_refuses_another_input_size(chain):
    model = _token_model(chain)
    assert analyze(load_model(model)).totals.macs == 16 * 3 * 16 * 8 * 8 + 65 * 16 * 8   # fits at the export size
    with pytest.raises(ShapeError) as caught:   # 257 tokens at 64×64: onnxruntime refuses the graph too
        load_model(model, input_shapes={"x": (1, 3, 64, 64)})
    message = str(caught.value)
    assert "'add_pos' (Add)" in message and "'tok' [1, 257, 16]" in message and "'pos' [1, 65, 16]" in message
    assert "exported for x=1x3x32x32 (given: x=1x3x64x64)" in message and "position embedding" in message


def test_a_declared_shape_never_stands_in_for_a_broadcast_that_cannot_be():
    # a custom op's output is declared [1, 65, 16]; the Add's declared [1, 17, 16] must not be taken after it
    pos = numpy_helper.from_array(np.ones((1, 17, 16), np.float32), "pos")
    nodes = [helper.make_node("Tokens", ["x"], ["u"], domain="custom"),
             helper.make_node("Add", ["u", "pos"], ["e"], name="add_pos"),
             helper.make_node("MatMul", ["e", "m"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [pos, numpy_helper.from_array(np.ones((16, 8), np.float32), "m")],
                              value_info=[helper.make_tensor_value_info("u", TensorProto.FLOAT, [1, 65, 16]),
                                          helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 17, 16])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    with pytest.raises(ShapeError, match=r"'add_pos' \(Add\): its inputs 'u' \[1, 65, 16\] and 'pos' \[1, 17, 16\] "
                                         r"do not broadcast"):
        load_model(model)


@pytest.mark.parametrize(("shapes", "out"), [([(1, 16, 8, 8), (16, 1, 1)], (1, 16, 8, 8)), ([(3, 1), (1, 4)], (3, 4)),
                                             ([(2, 1, 5), (), (4, 1)], (2, 4, 5)), ([(0, 3), (1, 3)], (0, 3))])
def test_broadcasting_follows_the_onnx_rule(shapes, out):
    assert broadcast_misfit(shapes) == (out, "")
    assert broadcast_misfit([(2, 3), (3, 2)])[0] is None


def test_an_elementwise_output_shape_that_contradicts_its_inputs_is_refused():
    from segcost.ir import TensorInfo
    from segcost.shapes.fit import check_fit

    graph = load_model(_token_model(False))
    check_fit(graph)   # as loaded: [1, 65, 16] + [1, 65, 16] → [1, 65, 16]
    graph.tensors["e"] = TensorInfo("e", TensorProto.FLOAT, (1, 17, 16))   # as a stale or declared shape would
    with pytest.raises(ShapeError, match=r"'add_pos' \(Add\): .* broadcast to \[1, 65, 16\], but its output 'e' is "
                                         r"given \[1, 17, 16\]"):
        check_fit(graph)


def test_a_resize_to_a_traced_size_is_named_when_its_output_no_longer_broadcasts():
    """torchvision LR-ASPP: `F.interpolate(high, size=low.shape[-2:])` traced at one size becomes
    Resize(sizes=Concat(Shape(x)[:2], [15, 25])); at another input the Add after it cannot broadcast, and the
    message names the Resize that fixed the size (it used to name only the Add)."""
    model = _patch_model([helper.make_node("MaxPool", ["c"], ["low"], kernel_shape=[2, 2], strides=[2, 2]),
                          helper.make_node("Shape", ["c"], ["s"]), helper.make_node("Slice", ["s", "z", "two"], ["nc"]),
                          helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
                          helper.make_node("Resize", ["c", "", "", "sizes"], ["high"], name="up", mode="linear"),
                          helper.make_node("Relu", ["high"], ["act"]),
                          helper.make_node("Add", ["low", "act"], ["y"], name="merge")],
                         [_ints("z", 0), _ints("two", 2), _ints("hw", 4, 4)])
    assert analyze(load_model(model)).totals.macs == 16 * 3 * 16 * 8 * 8
    with pytest.raises(ShapeError, match=r"'merge'.*output size of Resize 'up' \[1, 16, 4, 4\] was fixed"):
        load_model(model, {"x": (1, 3, 64, 64)})


_SHAPES = [None, (), (1,), (3,), (2, 3), (1, 3), (2, 1), (3, 2), (0, 3), ("n", 3), (None, 3), (1, 2, 3)]


@pytest.mark.parametrize("op_type", ["Add", "Mul", "Where"])
def test_an_elementwise_check_agrees_with_the_broadcast_rule_for_every_form(op_type):
    """check_fit's inline test of a two-input elementwise node (names held in graph.tensors) refuses exactly
    what _broadcast refuses, whatever the shapes (open, symbolic, empty, rank 0), the output's shape, or an
    operand that is an initializer, omitted or not held."""
    from itertools import product

    from segcost.ir import Graph, Initializer, Node, TensorInfo
    from segcost.shapes.fit import _broadcast, check_fit

    forms = list(product(_SHAPES, _SHAPES[:8], [None, (2, 3), (3, 2), ()], ["held", "init", "omitted", "unheld"]))
    refused = 0
    for first, second, out, form in forms:
        graph = Graph()
        names = ["a", "b", "c"][:3 if op_type == "Where" else 2]
        if form == "omitted":
            names[1] = ""
        graph.add_node(Node("n", op_type, inputs=names, outputs=["y"]), "n")
        for name, shape in zip(("a", "b", "c", "y"), (first, second, first, out)):
            if name == "b" and form == "init" and shape is not None and all(isinstance(dim, int) for dim in shape):
                graph.initializers["b"] = Initializer("b", TensorProto.FLOAT, shape)
            elif not (name == "b" and form == "unheld"):
                graph.tensors[name] = TensorInfo(name, TensorProto.FLOAT, shape)
        expected = _broadcast(graph, "n", graph.node("n"), ())
        if expected:
            refused += 1
            with pytest.raises(ShapeError) as caught:
                check_fit(graph)
            assert expected in str(caught.value), (first, second, out, form)
        else:
            check_fit(graph)   # no error
    assert refused   # the forms include misfits


def test_an_operand_computed_from_constants_alone_is_named_as_baked():
    """HF DPT: the position table is Concat(cls_pos, patch_pos) of two initializers (breaker9 R1b: the error named
    only the Add)."""
    tail = [helper.make_node("Reshape", ["c", "flat"], ["r"]),
            helper.make_node("Transpose", ["r"], ["tok"], perm=[0, 2, 1]),
            helper.make_node("Concat", ["cls_pos", "patch_pos"], ["pos"], axis=1),
            helper.make_node("Add", ["tok", "pos"], ["y"], name="add_pos")]
    model = _patch_model(tail, [_ints("flat", 1, 16, -1),
                                numpy_helper.from_array(np.zeros((1, 1, 16), np.float32), "cls_pos"),
                                numpy_helper.from_array(np.zeros((1, 63, 16), np.float32), "patch_pos")])
    assert analyze(load_model(model)).totals.macs == 16 * 3 * 16 * 8 * 8
    with pytest.raises(ShapeError, match=r"'add_pos'.*shape of 'pos' \[1, 64, 16\], computed from constants only"):
        load_model(model, {"x": (1, 3, 64, 64)})


@given(st.lists(st.one_of(st.integers(-2, 9), st.sampled_from(["n", None])), max_size=5))
def test_equal_shapes_always_fit_their_broadcast(dims):
    """check_fit passes an elementwise op whose inputs and output have equal shapes without asking
    _broadcast_problem: it finds nothing wrong there, whatever the dims (the shortcut's premise)."""
    shape = tuple(dims)
    assert _broadcast_problem((shape, shape), shape)[0] == ""
