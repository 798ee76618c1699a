"""An If inside a Loop body: a condition known at the given input shapes counts the taken branch × trips
(breaker10 R4: an outer condition computed from shapes counted the larger branch × trips); one the body computes
from run-time values counts the larger branch every trip, and a warning says the count is an upper bound.

Ground truth: the branch onnxruntime runs on each trip, its MACs counted by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.pipeline import run_onnxruntime

TRIPS = 3


def _value(name, shape=None, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _conv_branch(name: str, k: int, source: str = "c_in") -> onnx.GraphProto:
    """Conv k×k 8→8 of `source`, padded to keep its size; the weight a constant of the branch."""
    weight = numpy_helper.from_array(np.full((8, 8, k, k), 0.01, np.float32), f"{name}_w")
    return helper.make_graph([helper.make_node("Conv", [source, f"{name}_w"], [f"{name}_y"], pads=[k // 2] * 4,
                                               name=f"{name}_conv")], name, [], [_value(f"{name}_y")], [weight])


def _shape_condition(prefix: str, source: str, output: str):
    """output = Shape(source)[2] > 48."""
    nodes = [helper.make_node("Shape", [source], [prefix + "s"]),
             helper.make_node("Gather", [prefix + "s", prefix + "two"], [prefix + "h"], axis=0),
             helper.make_node("Greater", [prefix + "h", prefix + "limit"], [output])]
    return nodes, [numpy_helper.from_array(np.array(2, np.int64), prefix + "two"),
                   numpy_helper.from_array(np.array(48, np.int64), prefix + "limit")]


def _loop_model(where: str, declared: bool, side: int, nested: bool = False) -> onnx.ModelProto:
    """x [1,8,S,S] → Loop, 3 trips, carrying c: c ← If(cond: then Conv 3×3 8→8, else Conv 1×1 8→8).

    where: "outer" — cond = Shape(x)[2] > 48 computed in the main graph (loop-invariant); "body" — the same
    computed in the body from the carried c's shape; "iteration" — cond = i < 1 (trip 0 takes then).
    declared: the body declares c's shape. nested: the If's then branch holds a second If on the same kind of
    condition (named `cond2`, computed where cond is), then Conv 5×5, else Conv 3×3.
    """
    shape = [1, 8, side, side] if declared else None
    main_nodes, main_inits, body_nodes, body_inits = [], [], [], []
    condition_nodes = {"outer": (main_nodes, main_inits), "body": (body_nodes, body_inits)}
    if where == "iteration":
        body_nodes.append(helper.make_node("Less", ["i", "one"], ["cond"]))
        body_inits.append(numpy_helper.from_array(np.array(1, np.int64), "one"))
    else:
        nodes, inits = _shape_condition("p_", "x" if where == "outer" else "c_in", "cond")
        condition_nodes[where][0].extend(nodes)
        condition_nodes[where][1].extend(inits)
    then_branch = _conv_branch("t", 3)
    if nested:
        if where == "iteration":
            raise ValueError("nested is for shape conditions")
        nodes, inits = _shape_condition("q_", "x" if where == "outer" else "c_in", "cond2")
        condition_nodes[where][0].extend(nodes)
        condition_nodes[where][1].extend([numpy_helper.from_array(np.array(2, np.int64), "q_two"),
                                          numpy_helper.from_array(np.array(8, np.int64), "q_limit")])
        inner = helper.make_node("If", ["cond2"], ["t_y"], then_branch=_conv_branch("n5", 5),
                                 else_branch=_conv_branch("n3", 3), name="inner_if")
        then_branch = helper.make_graph([inner], "t", [], [_value("t_y")])
    body_nodes += [helper.make_node("If", ["cond"], ["c_out"], then_branch=then_branch,
                                    else_branch=_conv_branch("e", 1), name="body_if"),
                   helper.make_node("Identity", ["go_in"], ["go_out"])]
    body = helper.make_graph(body_nodes, "body", [_value("i", [], TensorProto.INT64),
                                                  _value("go_in", [], TensorProto.BOOL), _value("c_in", shape)],
                             [_value("go_out", [], TensorProto.BOOL), _value("c_out", shape)], body_inits)
    main_inits += [numpy_helper.from_array(np.array(TRIPS, np.int64), "M"),
                   numpy_helper.from_array(np.array(True), "go")]
    graph = helper.make_graph([*main_nodes, helper.make_node("Loop", ["M", "go", "x"], ["y"], name="loop", body=body)],
                              "g", [_value("x", [1, 8, side, side])], [_value("y")], main_inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _conv_macs(k: int, side: int) -> int:
    return 8 * 8 * k * k * side * side


@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "declared"])
@pytest.mark.parametrize("where", ["outer", "body"])
@pytest.mark.parametrize("side", [16, 64])
def test_a_shape_computed_condition_counts_the_taken_branch_every_trip(where, declared, side):
    model = _loop_model(where, declared, side)
    result = analyze(load_model(model))
    then = side > 48
    assert result.totals.macs == TRIPS * _conv_macs(3 if then else 1, side)
    (entry,) = result.control_flow
    assert entry.trip_count == TRIPS and not entry.unbounded and not result.warnings
    x = np.ones((1, 8, side, side), np.float32)   # each trip multiplies by 0.01·8·k² (the kernel's ones, inside)
    centre = run_onnxruntime(model, {"x": x})[0][0, 0, side // 2, side // 2]
    assert np.isclose(centre, (0.01 * 8 * (9 if then else 1)) ** TRIPS, rtol=1e-4)   # the branch onnxruntime ran


@pytest.mark.parametrize("where", ["outer", "body"])
@pytest.mark.parametrize("side", [16, 64])
def test_an_if_nested_in_a_body_if_is_decided_too(where, side):
    """cond (H > 48) picks then only at 64, where cond2 (H > 8) picks the 5×5; at 16 the else 1×1 runs."""
    model = _loop_model(where, declared=False, side=side, nested=True)
    result = analyze(load_model(model))
    assert result.totals.macs == TRIPS * _conv_macs(5 if side > 48 else 1, side)
    x = np.ones((1, 8, side, side), np.float32)
    centre = run_onnxruntime(model, {"x": x})[0][0, 0, side // 2, side // 2]
    assert np.isclose(centre, (0.01 * 8 * (25 if side > 48 else 1)) ** TRIPS, rtol=1e-4)


def test_a_run_time_condition_counts_the_larger_branch_every_trip_as_an_upper_bound():
    """cond = i < 1: onnxruntime runs then (3×3) on trip 0 and else (1×1) on trips 1 and 2; segcost counts the
    larger branch on every trip and says that the count is an upper bound."""
    side = 16
    model = _loop_model("iteration", declared=False, side=side)
    result = analyze(load_model(model))
    run = _conv_macs(3, side) + (TRIPS - 1) * _conv_macs(1, side)
    assert result.totals.macs == TRIPS * _conv_macs(3, side) >= run
    assert any("body_if" in warning and "larger branch" in warning and "upper bound" in warning
               for warning in result.warnings)
    x = np.ones((1, 8, side, side), np.float32)
    centre = run_onnxruntime(model, {"x": x})[0][0, 0, side // 2, side // 2]
    assert np.isclose(centre, (0.01 * 8 * 9) * (0.01 * 8) ** 2, rtol=1e-4)   # the branches run, as said
