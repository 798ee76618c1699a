"""segcost.ir.opforms: every attribute-or-input form of an operand, across opsets 7–23.

Each model is built with onnx.helper at the opset whose form it exercises, loaded through the
normal loader, and the operand read back through the one helper.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.errors import InputError
from segcost.frontends.onnx import load_model
from segcost.ir import Node
from segcost.ir.opforms import (
    ABSENT,
    ATTRIBUTE,
    DEFAULT,
    DYNAMIC,
    INPUT,
    normalize_axes,
    normalize_axis,
    opset_of,
    read_operand,
    resize_output_shape,
)

X = [1, 4, 6, 8]


def graph_of(op_type: str, inputs: list[str], opset: int, constants: dict | None = None,
             constant_nodes: dict | None = None, x_shape=X, extra_inputs: dict | None = None,
             outputs: int = 1, domain_opsets: dict | None = None, **attrs):
    """Load a model with one node `op_type` named 'node' reading `inputs`.

    `constants` become initializers, `constant_nodes` Constant nodes (name → array or
    (attribute name, value)), `extra_inputs` more graph inputs (name → shape, int64).
    """
    nodes = []
    for name, value in (constant_nodes or {}).items():
        if isinstance(value, tuple):
            nodes.append(helper.make_node("Constant", [], [name], name=f"const_{name}", **{value[0]: value[1]}))
        else:
            nodes.append(helper.make_node("Constant", [], [name], name=f"const_{name}",
                                          value=numpy_helper.from_array(np.asarray(value), name)))
    output_names = [f"y{i}" for i in range(outputs)]
    nodes.append(helper.make_node(op_type, inputs, output_names, name="node", **attrs))
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    graph_inputs += [helper.make_tensor_value_info(name, TensorProto.INT64, shape)
                     for name, shape in (extra_inputs or {}).items()]
    graph = helper.make_graph(
        nodes, "forms", graph_inputs,
        [helper.make_empty_tensor_value_info(name) for name in output_names],
        initializer=[numpy_helper.from_array(np.asarray(value), name) for name, value in (constants or {}).items()])
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(domain, version) for domain, version in (domain_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return load_model(model)


def f32(*values):
    return np.array(values, dtype=np.float32) if len(values) != 1 else np.array(values[0], dtype=np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


# -- Clip ----------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [7, 10])
def test_clip_attributes_before_11(opset):
    graph = graph_of("Clip", ["x"], opset, min=0.0, max=6.0)
    assert read_operand(graph, "node", "min").floats() == (0.0,)
    assert read_operand(graph, "node", "max").source == ATTRIBUTE
    assert read_operand(graph, "node", "max").scalar() == 6.0


def test_clip_attribute_defaults_before_11():
    graph = graph_of("Clip", ["x"], 9)
    low, high = read_operand(graph, "node", "min"), read_operand(graph, "node", "max")
    assert (low.source, low.scalar(), high.source, high.scalar()) == (DEFAULT, -np.inf, DEFAULT, np.inf)


@pytest.mark.parametrize("opset", [11, 13, 23])
def test_clip_min_only_input_is_relu(opset):
    """Clip(x, 0): one bound given, the max input omitted entirely."""
    graph = graph_of("Clip", ["x", "zero"], opset, constants={"zero": f32(0.0)})
    low, high = read_operand(graph, "node", "min"), read_operand(graph, "node", "max")
    assert (low.source, low.tensor, low.scalar()) == (INPUT, "zero", 0.0)
    assert high.source == ABSENT and not high.known and not high.given


def test_clip_empty_min_name_means_absent():
    graph = graph_of("Clip", ["x", "", "six"], 13, constant_nodes={"six": f32(6.0)})
    assert read_operand(graph, "node", "min").source == ABSENT
    high = read_operand(graph, "node", "max")
    assert (high.source, high.scalar()) == (INPUT, 6.0)


def test_clip_bounds_from_constant_nodes_and_scalar_attributes():
    graph = graph_of("Clip", ["x", "lo", "hi"], 12,
                     constant_nodes={"lo": ("value_float", 0.0), "hi": ("value_floats", [6.0])})
    assert read_operand(graph, "node", "min").floats() == (0.0,)
    assert read_operand(graph, "node", "max").floats() == (6.0,)


def test_clip_bound_from_graph_input_is_dynamic():
    graph = graph_of("Clip", ["x", "lo"], 13, extra_inputs={"lo": []})
    low = read_operand(graph, "node", "min")
    assert (low.source, low.tensor, low.known, low.given) == (DYNAMIC, "lo", False, True)


def test_clip_attribute_at_opset_11_is_an_input_error():
    """onnxruntime refuses it too ("Unrecognized attribute"); counting it as unbounded would be wrong."""
    graph = graph_of("Clip", ["x"], 10, min=0.0)
    graph.info.opset_imports[""] = 11
    with pytest.raises(InputError, match=r"node 'node' \(Clip\): attribute 'min' is not part of Clip at opset 11"):
        read_operand(graph, "node", "min")


# -- axes: Squeeze / Unsqueeze / Reduce* / Split --------------------------------------------
def test_squeeze_axes_attribute_then_input():
    old = graph_of("Squeeze", ["x"], 12, x_shape=[1, 4, 1, 8], axes=[0, -2])
    assert read_operand(old, "node", "axes").ints() == (0, -2)
    new = graph_of("Squeeze", ["x", "axes"], 13, x_shape=[1, 4, 1, 8], constants={"axes": i64(0, -2)})
    axes = read_operand(new, "node", "axes")
    assert (axes.source, axes.ints()) == (INPUT, (0, -2))
    none = graph_of("Squeeze", ["x"], 13, x_shape=[1, 4, 1, 8])
    assert read_operand(none, "node", "axes").source == ABSENT


def test_unsqueeze_axes_attribute_then_constant_node():
    old = graph_of("Unsqueeze", ["x"], 11, axes=[-1])
    assert read_operand(old, "node", "axes").ints() == (-1,)
    new = graph_of("Unsqueeze", ["x", "axes"], 21, constant_nodes={"axes": ("value_ints", [-1])})
    assert read_operand(new, "node", "axes").ints() == (-1,)


@pytest.mark.parametrize("op_type,moved_at", [("ReduceSum", 13), ("ReduceMean", 18), ("ReduceMax", 18),
                                              ("ReduceL2", 18), ("ReduceLogSumExp", 18)])
def test_reduce_axes_move_to_input_at_their_opset(op_type, moved_at):
    before = graph_of(op_type, ["x"], moved_at - 1, axes=[1])
    assert read_operand(before, "node", "axes").source == ATTRIBUTE
    assert read_operand(before, "node", "axes").ints() == (1,)
    after = graph_of(op_type, ["x", "axes"], moved_at, constants={"axes": i64(1)})
    assert read_operand(after, "node", "axes").source == INPUT
    assert read_operand(after, "node", "axes").ints() == (1,)


def test_reduce_mean_attribute_axes_at_18_is_an_input_error():
    graph = graph_of("ReduceMean", ["x"], 17, axes=[1])
    graph.info.opset_imports[""] = 18
    with pytest.raises(InputError,
                       match="attribute 'axes' is not part of ReduceMean at opset 18; there 'axes' is input #1"):
        read_operand(graph, "node", "axes")


def test_split_attribute_then_input_and_num_outputs():
    old = graph_of("Split", ["x"], 11, outputs=2, axis=1, split=[1, 3])
    assert read_operand(old, "node", "split").ints() == (1, 3)
    assert read_operand(old, "node", "axis").ints() == (1,)
    new = graph_of("Split", ["x", "s"], 13, outputs=2, axis=1, constants={"s": i64(1, 3)})
    assert read_operand(new, "node", "split").ints() == (1, 3)
    counted = graph_of("Split", ["x"], 18, outputs=2, axis=1, num_outputs=2)
    assert read_operand(counted, "node", "split").source == ABSENT
    assert read_operand(counted, "node", "num_outputs").scalar() == 2


# -- Pad / Slice ------------------------------------------------------------------------------
def test_pad_forms():
    old = graph_of("Pad", ["x"], 10, pads=[0, 0, 1, 1, 0, 0, 1, 1], value=2.0)
    assert read_operand(old, "node", "pads").ints() == (0, 0, 1, 1, 0, 0, 1, 1)
    assert read_operand(old, "node", "constant_value").scalar() == 2.0
    new = graph_of("Pad", ["x", "p", "v"], 11, constants={"p": i64(0, 0, 1, 1, 0, 0, 1, 1), "v": f32(2.0)})
    assert read_operand(new, "node", "pads").source == INPUT
    assert read_operand(new, "node", "constant_value").scalar() == 2.0
    assert read_operand(new, "node", "axes").source == ABSENT  # no axes input before 18
    defaulted = graph_of("Pad", ["x", "p"], 13, constants={"p": i64(0, 0, 1, 1, 0, 0, 1, 1)})
    value = read_operand(defaulted, "node", "constant_value")
    assert (value.source, value.scalar()) == (DEFAULT, 0.0)
    with_axes = graph_of("Pad", ["x", "p", "", "a"], 18, constants={"p": i64(1, 1, 1, 1), "a": i64(-2, -1)})
    assert read_operand(with_axes, "node", "axes").ints() == (-2, -1)
    assert read_operand(with_axes, "node", "constant_value").source == DEFAULT


def test_slice_attributes_then_inputs_with_steps():
    old = graph_of("Slice", ["x"], 9, starts=[1], ends=[3], axes=[-1])
    assert [read_operand(old, "node", name).ints() for name in ("starts", "ends", "axes")] == [(1,), (3,), (-1,)]
    assert read_operand(old, "node", "steps").source == ABSENT
    new = graph_of("Slice", ["x", "s", "e", "a", "st"], 10,
                   constants={"s": i64(1), "e": i64(3), "a": i64(-1)}, constant_nodes={"st": i64(2)})
    assert [read_operand(new, "node", name).ints() for name in ("starts", "ends", "axes", "steps")] == \
        [(1,), (3,), (-1,), (2,)]
    dynamic = graph_of("Slice", ["x", "s", "e"], 13, constants={"e": i64(3)}, extra_inputs={"s": [1]})
    assert read_operand(dynamic, "node", "starts").source == DYNAMIC
    assert read_operand(dynamic, "node", "axes").source == ABSENT


# -- TopK / Dropout / Reshape / Softmax axis default ----------------------------------------------
def test_topk_k_attribute_then_input():
    assert read_operand(graph_of("TopK", ["x"], 9, outputs=2, k=3), "node", "k").scalar() == 3
    new = graph_of("TopK", ["x", "k"], 11, outputs=2, constants={"k": i64(3)})
    assert read_operand(new, "node", "k").scalar() == 3


def test_dropout_ratio_attribute_then_input():
    old = graph_of("Dropout", ["x"], 10, ratio=0.25)
    assert read_operand(old, "node", "ratio").scalar() == 0.25
    assert read_operand(old, "node", "training_mode").source == ABSENT
    new = graph_of("Dropout", ["x", "r"], 12, constants={"r": f32(0.25)})
    assert read_operand(new, "node", "ratio").scalar() == 0.25
    assert read_operand(new, "node", "training_mode").source == DEFAULT
    assert read_operand(graph_of("Dropout", ["x"], 13), "node", "ratio").scalar() == 0.5


def test_reshape_shape_input():
    graph = graph_of("Reshape", ["x", "s"], 14, constants={"s": i64(1, -1)})
    assert read_operand(graph, "node", "shape").ints() == (1, -1)


@pytest.mark.parametrize("opset,axis", [(11, 1), (13, -1)])
def test_softmax_axis_default_changes_at_13(opset, axis):
    operand = read_operand(graph_of("Softmax", ["x"], opset), "node", "axis")
    assert (operand.source, operand.scalar()) == (DEFAULT, axis)
    assert read_operand(graph_of("Softmax", ["x"], opset, axis=2), "node", "axis").scalar() == 2


# -- Resize / Upsample --------------------------------------------------------------------------
def test_upsample_scales_attribute_opset_7_and_input_opset_9():
    old = graph_of("Upsample", ["x"], 7, scales=[1.0, 1.0, 2.0, 2.0], mode="nearest")
    assert read_operand(old, "node", "scales").source == ATTRIBUTE
    assert resize_output_shape(old, "node", tuple(X)) == (1, 4, 12, 16)
    new = graph_of("Upsample", ["x", "s"], 9, constants={"s": f32(1, 1, 2, 2)})
    assert read_operand(new, "node", "scales").source == INPUT
    assert resize_output_shape(new, "node", tuple(X)) == (1, 4, 12, 16)


def test_resize_10_scales_is_input_1():
    graph = graph_of("Resize", ["x", "s"], 10, constants={"s": f32(1, 1, 0.5, 2)})
    assert read_operand(graph, "node", "scales").floats() == (1, 1, 0.5, 2)
    assert read_operand(graph, "node", "sizes").source == ABSENT
    assert resize_output_shape(graph, "node", tuple(X)) == (1, 4, 3, 16)


def test_resize_11_sizes_with_empty_scales_and_roi():
    graph = graph_of("Resize", ["x", "roi", "s", "sz"], 11,
                     constants={"roi": f32(*[]), "s": f32(*[]), "sz": i64(1, 4, 9, 20)})
    assert read_operand(graph, "node", "roi").value.size == 0
    assert resize_output_shape(graph, "node", tuple(X)) == (1, 4, 9, 20)


def test_resize_13_omitted_roi_and_scales_names():
    graph = graph_of("Resize", ["x", "", "", "sz"], 13, constant_nodes={"sz": i64(1, 4, 3, 5)})
    assert read_operand(graph, "node", "roi").source == ABSENT
    assert read_operand(graph, "node", "scales").source == ABSENT
    assert resize_output_shape(graph, "node", tuple(X)) == (1, 4, 3, 5)


def test_resize_scales_floor_like_onnxruntime():
    graph = graph_of("Resize", ["x", "", "s"], 13, x_shape=[1, 1, 7, 7], constants={"s": f32(1, 1, 1.5, 0.4)})
    # floor(7·1.5) = 10, floor(7·0.4) = 2
    assert resize_output_shape(graph, "node", (1, 1, 7, 7)) == (1, 1, 10, 2)


def test_resize_18_axes_and_keep_aspect_ratio():
    graph = graph_of("Resize", ["x", "", "", "sz"], 18, constants={"sz": i64(12, 12)}, axes=[-2, -1],
                     keep_aspect_ratio_policy="not_larger")
    # factor = min(12/6, 12/8) = 1.5 → (9, 12)
    assert resize_output_shape(graph, "node", tuple(X)) == (1, 4, 9, 12)
    stretch = graph_of("Resize", ["x", "", "s"], 18, constants={"s": f32(2, 3)}, axes=[2, 3])
    assert resize_output_shape(stretch, "node", tuple(X)) == (1, 4, 12, 24)


def test_resize_dynamic_sizes_give_no_shape():
    graph = graph_of("Resize", ["x", "", "", "sz"], 13, extra_inputs={"sz": [4]})
    assert read_operand(graph, "node", "sizes").source == DYNAMIC
    assert resize_output_shape(graph, "node", tuple(X)) is None


@pytest.mark.parametrize("scales", [(1, 1, -2, 2), (1, 1, 0, 2), (1, 1, float("nan"), 2)])
def test_resize_degenerate_scales_are_input_errors(scales):
    graph = graph_of("Resize", ["x", "", "s"], 13, constants={"s": f32(*scales)})
    with pytest.raises(InputError, match=r"node 'node' \(Resize\): scales .* must all be finite and > 0"):
        resize_output_shape(graph, "node", tuple(X))


def test_resize_wrong_count_and_zero_size_are_input_errors():
    graph = graph_of("Resize", ["x", "", "s"], 13, constants={"s": f32(2, 2)})
    with pytest.raises(InputError, match="scales has 2 values for 4 axes"):
        resize_output_shape(graph, "node", tuple(X))
    sized = graph_of("Resize", ["x", "", "", "sz"], 13, constants={"sz": i64(1, 4, 0, 5)})
    with pytest.raises(InputError, match=r"sizes \[1, 4, 0, 5\] must all be > 0"):
        resize_output_shape(sized, "node", tuple(X))


def test_upsample_downscale_is_an_input_error():
    graph = graph_of("Upsample", ["x", "s"], 9, constants={"s": f32(1, 1, 0.5, 0.5)})
    with pytest.raises(InputError, match=">= 1"):
        resize_output_shape(graph, "node", tuple(X))


# -- constants, opsets, axes -----------------------------------------------------------------------
def test_constant_node_with_external_data_is_refused_not_read():
    tensor = TensorProto(name="k", data_type=TensorProto.INT64, dims=[1], data_location=TensorProto.EXTERNAL)
    tensor.external_data.add(key="location", value="secret.bin")
    # the loader lifts Constant nodes into initializers (and confines their external data
    # itself); a Constant node a pass creates is still read by opforms, which must refuse this
    graph = graph_of("TopK", ["x", "k"], 11, outputs=2, constants={"k": i64(1)})
    del graph.initializers["k"]
    graph.add_node(Node(name="const_k", op_type="Constant", outputs=["k"], attrs={"value": tensor}))
    with pytest.raises(InputError, match="Constant.*external file"):
        read_operand(graph, "node", "k")


def test_opset_per_domain():
    graph = graph_of("Relu", ["x"], 17, domain_opsets={"com.microsoft": 1})
    assert opset_of(graph) == opset_of(graph, "ai.onnx") == 17
    assert opset_of(graph, "com.microsoft") == 1
    assert opset_of(graph, "org.example") == 0


def test_plain_attribute_and_string_attribute():
    graph = graph_of("ArgMax", ["x"], 13, outputs=1, axis=-3, keepdims=0)
    assert read_operand(graph, "node", "axis").scalar() == -3
    assert read_operand(graph, "node", "select_last_index").source == ABSENT
    resize = graph_of("Resize", ["x", "", "s"], 13, constants={"s": f32(1, 1, 2, 2)}, mode="linear")
    assert read_operand(resize, "node", "mode").value == "linear"


@pytest.mark.parametrize("axis,rank,expected", [(-3, 4, 1), (-1, 4, 3), (0, 4, 0), (3, 4, 3), (-1, 1, 0)])
def test_normalize_axis(axis, rank, expected):
    assert normalize_axis(axis, rank) == expected


@pytest.mark.parametrize("axis,rank", [(4, 4), (-5, 4), (0, 0)])
def test_normalize_axis_out_of_range_is_an_input_error(axis, rank):
    with pytest.raises(InputError, match=f"node 'n' \\(ArgMax\\) attribute axis = {axis} is out of range"):
        normalize_axis(axis, rank, "node 'n' (ArgMax) attribute axis")


def test_normalize_axes_negative_and_repeated():
    assert normalize_axes([-1, 0, -3], 4) == (3, 0, 1)
    with pytest.raises(InputError, match="repeats an axis"):
        normalize_axes([3, -1], 4)


def test_module_imports_only_the_ir():
    """opforms sits below shapes/passes/analyzer: only segcost.ir and segcost.errors are imported."""
    import ast
    from pathlib import Path

    import segcost.ir.opforms as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {name for name in imported if name.startswith("segcost")} <= {"segcost.errors", "segcost.ir.graph"}
    assert onnx  # the tests build models with onnx; the module itself imports it only for Constant tensors


def test_malformed_constant_tensor_is_an_input_error():
    graph = graph_of("TopK", ["x", "k"], 11, outputs=2, constants={"k": i64(1)})
    broken = TensorProto(name="k", data_type=TensorProto.INT64, dims=[3])
    broken.int64_data.append(1)  # 1 value for 3 elements
    del graph.initializers["k"]  # a Constant node made by a pass (the loader lifts the file's)
    graph.add_node(Node(name="const_k", op_type="Constant", outputs=["k"], attrs={"value": broken}))
    with pytest.raises(InputError, match="node 'const_k' \\(Constant\\): tensor 'k' is malformed"):
        read_operand(graph, "node", "k")
