"""If nodes nested in a branch taken at the given input shapes are decided too (shapes.branches), whatever their
condition: a constant of the branch, a constant of the outer graph, or computed from static shapes (breaker10 R2);
each inlined branch's tensors go back to its own If, however its key is spelled.

Ground truth: the MACs of the branches onnxruntime runs, counted by hand, and onnxruntime's output shape."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.errors import ShapeError
from segcost.frontends.onnx import load_model

RNG = np.random.default_rng(0)


def _value(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def _weight(name: str, cout: int, cin: int, k: int) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.standard_normal((cout, cin, k, k)).astype(np.float32), name)


def _conv(name: str, source: str, output: str, cout: int, cin: int, k: int, stride: int = 1
          ) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    node = helper.make_node("Conv", [source, name + "_w"], [output], pads=[k // 2] * 4, strides=[stride] * 2,
                            name=name)
    return node, _weight(name + "_w", cout, cin, k)


def _branch(name: str, nodes_and_weights: list, output: str, extra_inits=()) -> onnx.GraphProto:
    nodes = [pair[0] for pair in nodes_and_weights]
    inits = [pair[1] for pair in nodes_and_weights] + list(extra_inits)
    return helper.make_graph(nodes, name, [], [_value(output)], inits)


def _shape_condition(prefix: str, source: str, output: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """output = Shape(source)[2] > 48, its nodes and constants named with `prefix`."""
    nodes = [helper.make_node("Shape", [source], [prefix + "s"]),
             helper.make_node("Gather", [prefix + "s", prefix + "two"], [prefix + "h"], axis=0),
             helper.make_node("Greater", [prefix + "h", prefix + "limit"], [output])]
    return nodes, [numpy_helper.from_array(np.array(2, np.int64), prefix + "two"),
                   numpy_helper.from_array(np.array(48, np.int64), prefix + "limit")]


def _nested_model(kind: str, inner_value: bool | None = None) -> onnx.ModelProto:
    """x [1,8,S,S] → outer If (a constant-True initializer) whose then branch holds an inner If:
    then: Conv 3×3 stride 2 8→4 (→ S/2), else: Conv 1×1 8→4; → post Conv 1×1 4→2. The outer else (never run)
    is a Conv 3×3 8→4. The inner condition: `kind` "branch_constant" (an initializer of the outer branch),
    "constant_node" (a Constant node there), "outer_constant" (an initializer of the main graph), "shape"
    (Shape(x)[2] > 48 computed in the outer branch) or "outer_shape" (the same, computed in the main graph)."""
    inner = helper.make_node("If", ["icond"], ["iy"], name="inner",
                             then_branch=_branch("inner_then", [_conv("it", "x", "ity", 4, 8, 3, 2)], "ity"),
                             else_branch=_branch("inner_else", [_conv("ie", "x", "iey", 4, 8, 1)], "iey"))
    branch_nodes: list[onnx.NodeProto] = []
    branch_inits: list[onnx.TensorProto] = []
    main_nodes: list[onnx.NodeProto] = []
    main_inits = [numpy_helper.from_array(np.array(True), "ocond")]
    if kind == "branch_constant":
        branch_inits.append(numpy_helper.from_array(np.array(inner_value), "icond"))
    elif kind == "constant_node":
        branch_nodes.append(helper.make_node("Constant", [], ["icond"],
                                             value=numpy_helper.from_array(np.array(inner_value))))
    elif kind == "outer_constant":
        main_inits.append(numpy_helper.from_array(np.array(inner_value), "icond"))
    elif kind == "shape":
        branch_nodes, branch_inits = _shape_condition("b_", "x", "icond")
    else:
        main_nodes, inits = _shape_condition("m_", "x", "icond")
        main_inits += inits
    outer_then = helper.make_graph([*branch_nodes, inner], "outer_then", [], [_value("iy")], branch_inits)
    outer = helper.make_node("If", ["ocond"], ["z"], name="outer", then_branch=outer_then,
                             else_branch=_branch("outer_else", [_conv("oe", "x", "oey", 4, 8, 3)], "oey"))
    post, post_w = _conv("post", "z", "out", 2, 4, 1)
    graph = helper.make_graph([*main_nodes, outer, post], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "S", "S"])],
                              [_value("out")], [*main_inits, post_w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, side: int) -> tuple[int, ...]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.ones((1, 8, side, side), np.float32)})[0].shape


@pytest.mark.parametrize(("kind", "inner_value", "side"), [
    ("branch_constant", False, 16), ("branch_constant", True, 16), ("constant_node", False, 16),
    ("constant_node", True, 16), ("outer_constant", False, 16), ("outer_constant", True, 16),
    ("shape", None, 16), ("shape", None, 64), ("outer_shape", None, 16), ("outer_shape", None, 64)])
def test_an_if_nested_in_a_taken_branch_is_decided_like_a_top_level_one(kind, inner_value, side):
    model = _nested_model(kind, inner_value)
    inner_then = side > 48 if inner_value is None else inner_value
    out = side // 2 if inner_then else side
    branch_macs = 4 * 8 * (9 if inner_then else 1) * out * out   # the inner branch onnxruntime runs
    post_macs = 2 * 4 * out * out
    assert _run(model, side) == (1, 2, out, out)
    result = analyze(load_model(model, input_shapes={"x": (1, 8, side, side)}))
    layers = {layer.name: layer for layer in result.layers}
    assert layers["post"].output_shape == [1, 2, out, out]
    assert (layers["outer"].macs, layers["post"].macs, result.totals.macs) == (branch_macs, post_macs,
                                                                              branch_macs + post_macs)
    # the weights of the inner branch run, not the other's; the conditions (`ocond`, `icond`: bool) and the shape
    # condition's index and threshold (int64) are not weights, so not params (analyzer.weights.is_weight)
    assert layers["outer"].params == 4 * 8 * (9 if inner_then else 1)
    assert [sub.name for sub in result.control_flow[0].subgraphs] == ["then_branch"]
    assert not result.coverage.unsupported and not result.coverage.shape_unknown


def test_three_levels_mixing_constant_and_computed_conditions():
    """outer (constant True) → middle If on Shape(x)[2] > 48 computed in the outer branch → in the middle's else
    an inner If whose condition (Shape(m)[3] > 4, m the middle branch's MaxPool output) is known only once the
    middle If is decided and inferred: one more round of the fixed point."""
    inner = helper.make_node("If", ["ic"], ["iy"], name="inner",
                             then_branch=_branch("it", [_conv("it", "m", "ity", 8, 8, 3)], "ity"),
                             else_branch=_branch("ie", [_conv("ie", "m", "iey", 8, 8, 1)], "iey"))
    inner_cond, inner_inits = _shape_condition("i_", "m", "ic")
    inner_cond[1].input[1] = "i_three"
    inner_inits[0] = numpy_helper.from_array(np.array(3, np.int64), "i_three")
    inner_inits[1] = numpy_helper.from_array(np.array(4, np.int64), "i_limit")
    inner_cond[2].input[1] = "i_limit"
    middle_else = helper.make_graph([helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
                                     *inner_cond, inner], "middle_else", [], [_value("iy")], inner_inits)
    middle = helper.make_node("If", ["mc"], ["my"], name="middle",
                              then_branch=_branch("mt", [_conv("mt", "x", "mty", 8, 8, 5)], "mty"),
                              else_branch=middle_else)
    middle_cond, middle_inits = _shape_condition("m_", "x", "mc")
    outer_then = helper.make_graph([*middle_cond, middle], "outer_then", [], [_value("my")], middle_inits)
    outer = helper.make_node("If", ["ocond"], ["z"], name="outer", then_branch=outer_then,
                             else_branch=_branch("oe", [_conv("oe", "x", "oey", 8, 8, 3)], "oey"))
    graph = helper.make_graph([outer], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [_value("z")], [numpy_helper.from_array(np.array(True), "ocond")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    # 16 ≤ 48: the middle else runs (MaxPool to 8×8); 8 > 4: the inner then runs, Conv 3×3 8→8 at 8×8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((1, 8, 16, 16), np.float32)})[0].shape == (1, 8, 8, 8)
    result = analyze(load_model(model))
    assert result.totals.macs == 8 * 8 * 9 * 8 * 8
    assert result.model.outputs[0].shape == [1, 8, 8, 8]


def _chain(depth: int) -> onnx.ModelProto:
    """`depth` Ifs nested in each other's then branch, each on a constant-True initializer of its scope;
    the innermost then branch is a Conv 1×1 8→8, every else a Conv 3×3 8→8."""
    then = _branch("t0", [_conv("t0", "x", "y0", 8, 8, 1)], "y0")
    for level in range(1, depth + 1):
        node = helper.make_node("If", [f"c{level}"], [f"y{level}"], name=f"if{level}", then_branch=then,
                                else_branch=_branch(f"e{level}", [_conv(f"e{level}", "x", f"e{level}y", 8, 8, 3)],
                                                    f"e{level}y"))
        if level < depth:
            then = helper.make_graph([node], f"t{level}", [], [_value(f"y{level}")],
                                     [numpy_helper.from_array(np.array(True), f"c{level}")])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
                              [_value(f"y{depth}")], [numpy_helper.from_array(np.array(True), f"c{depth}")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_nesting_deeper_than_the_limit_is_one_line_error(monkeypatch, run_cli, tmp_path):
    from segcost.shapes import branches

    assert analyze(load_model(_chain(4))).totals.macs == 8 * 8 * 16   # the innermost 1×1, within the limit
    monkeypatch.setattr(branches, "MAX_BRANCH_DEPTH", 2)
    with pytest.raises(ShapeError) as caught:
        analyze(load_model(_chain(4)))
    message = str(caught.value)
    assert "\n" not in message and "'if4'" in message and "nested more than 2" in message
    path = tmp_path / "deep.onnx"
    onnx.save_model(_chain(4), path)
    code, out, err = run_cli("analyze", str(path))
    assert code == 2 and not out and err.startswith("segcost: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("keys", [("a", "a/b"), ("a/b", "a")])
def test_each_if_gets_its_own_branch_tensors_whatever_its_key(keys):
    """Two Ifs keyed `a` and `a/b` (either order), both on constant conditions: each branch's inner tensor
    (`t`: Conv 1×1 8→8, then a Conv 3×3 8→8 of it) is found under its own If. Was: matched by name prefix, so the
    If keyed `a` took `a/b`'s tensors and `a/b`'s second Conv had no input shape."""
    nodes = []
    inits = []
    for index, key in enumerate(keys):
        source = "x" if index == 0 else "z0"
        then = _branch(f"then{index}", [_conv(f"p{index}", source, f"t{index}", 8, 8, 1),
                                        _conv(f"q{index}", f"t{index}", f"u{index}", 8, 8, 3)], f"u{index}")
        nodes.append(helper.make_node("If", ["on"], [f"z{index}"], name=key, then_branch=then,
                                      else_branch=_branch(f"else{index}", [_conv(f"r{index}", source, f"v{index}",
                                                                                 8, 8, 1, 2)], f"v{index}")))
    inits.append(numpy_helper.from_array(np.array(True), "on"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
                              [_value("z1")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((1, 8, 8, 8), np.float32)})[0].shape == (1, 8, 8, 8)
    graph_ir = load_model(model)
    result = analyze(graph_ir)
    per_if = 8 * 8 * (1 + 9) * 8 * 8
    assert {layer.name: layer.macs for layer in result.layers} == {keys[0]: per_if, keys[1]: per_if}
    for index, key in enumerate(keys):
        assert set(graph_ir.node(key).meta["subgraph_tensors"]) == {f"t{index}", f"u{index}", f"p{index}_w",
                                                                    f"q{index}_w"}


def _taken_outer(then_branch: onnx.GraphProto) -> onnx.ModelProto:
    """z = If(on = constant True, then: `then_branch`, else: Identity(x)); inputs x [1,8,16,16] and c (bool)."""
    outer = helper.make_node("If", ["on"], ["z"], name="outer", then_branch=then_branch,
                             else_branch=helper.make_graph([helper.make_node("Identity", ["x"], ["ox"])], "oe", [],
                                                           [_value("ox")]))
    graph = helper.make_graph([outer], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16]),
                                             helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [_value("z")], [numpy_helper.from_array(np.array(True), "on")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_an_if_left_open_in_a_taken_branch_keeps_its_branches_shapes():
    """The outer If (constant True) is taken; the inner one's condition is a graph input: it counts its larger
    branch (then: Conv 3×3 8→8 → Conv 1×1 8→8; else: Conv 1×1 8→8), whose inner tensor has the shape onnx
    inferred inside it (was: 'shape unknown' for the second Conv's input, the model refused), with a warning
    that the count is an upper bound."""
    inner = helper.make_node("If", ["c"], ["iy"], name="inner",
                             then_branch=_branch("it", [_conv("i3", "x", "a", 8, 8, 3), _conv("i1", "a", "b", 8, 8, 1)],
                                                 "b"),
                             else_branch=_branch("ie", [_conv("ie", "x", "e", 8, 8, 1)], "e"))
    model = _taken_outer(helper.make_graph([inner], "ot", [], [_value("iy")]))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for condition in (True, False):
        feeds = {"x": np.ones((1, 8, 16, 16), np.float32), "c": np.array(condition)}
        assert session.run(None, feeds)[0].shape == (1, 8, 16, 16)
    result = analyze(load_model(model))
    then_macs = 8 * 8 * (9 + 1) * 16 * 16
    assert result.totals.macs == then_macs and not result.coverage.shape_unknown
    assert any("inner (If)" in warning and "upper bound" in warning for warning in result.warnings)


def test_an_if_left_open_reads_the_taken_branchs_constants_and_tensors():
    """The inner If's branches read a weight and a tensor of the outer branch (`w3`, `pre`): both renamed with
    the outer branch when it is inlined (onnx.compose.add_prefix_graph left such nested reads of a branch
    constant dangling). Then: two Conv 3×3 8→8 of `pre`; else: one."""
    conv = lambda source, output: helper.make_node("Conv", [source, "w3"], [output], pads=[1] * 4)  # noqa: E731
    inner = helper.make_node("If", ["c"], ["iy"], name="inner",
                             then_branch=helper.make_graph([conv("pre", "a"), conv("a", "b")], "it", [], [_value("b")]),
                             else_branch=helper.make_graph([conv("pre", "e")], "ie", [], [_value("e")]))
    outer_then = helper.make_graph([helper.make_node("Relu", ["x"], ["pre"]), inner], "ot", [], [_value("iy")],
                                   [_weight("w3", 8, 8, 3)])
    model = _taken_outer(outer_then)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": np.ones((1, 8, 16, 16), np.float32), "c": np.array(True)}
    assert session.run(None, feeds)[0].shape == (1, 8, 16, 16)
    result = analyze(load_model(model))
    assert result.totals.macs == 2 * 8 * 8 * 9 * 16 * 16 and not result.coverage.shape_unknown
    assert result.totals.params == 8 * 8 * 9   # w3 once (the bool condition is not a weight)


def _dependent_ifs() -> onnx.ModelProto:
    """x [1,8,16,16] → If A (H > 48: identity; else MaxPool 2 → 8×8) → a; If B on Shape(a)[2] > 4 (known only once
    A is decided: onnx merges A's branches to a symbolic H): then Conv 3×3 8→8 of a, else Conv 1×1."""
    a_then = helper.make_graph([helper.make_node("Identity", ["x"], ["at"])], "at", [], [_value("at")])
    a_else = helper.make_graph([helper.make_node("MaxPool", ["x"], ["ae"], kernel_shape=[2, 2], strides=[2, 2])],
                               "ae", [], [_value("ae")])
    a_cond, a_inits = _shape_condition("a_", "x", "ac")
    b_cond, b_inits = _shape_condition("b_", "a", "bc")
    b_inits[1] = numpy_helper.from_array(np.array(4, np.int64), "b_limit")
    nodes = [*a_cond, helper.make_node("If", ["ac"], ["a"], name="A", then_branch=a_then, else_branch=a_else),
             *b_cond, helper.make_node("If", ["bc"], ["b"], name="B",
                                       then_branch=_branch("bt", [_conv("bt", "a", "bty", 8, 8, 3)], "bty"),
                                       else_branch=_branch("be", [_conv("be", "a", "bey", 8, 8, 1)], "bey"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [_value("b")], [*a_inits, *b_inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_an_if_whose_condition_follows_another_ifs_branch_is_decided_in_the_next_round(monkeypatch):
    model = _dependent_ifs()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.ones((1, 8, 16, 16), np.float32)})[0].shape == (1, 8, 8, 8)
    result = analyze(load_model(model))
    assert result.totals.macs == 8 * 8 * 9 * 8 * 8   # A's else (8×8), then B's then (8 > 4)
    from segcost.shapes import branches

    monkeypatch.setattr(branches, "MAX_BRANCH_DEPTH", 0)   # one round: B is still decidable after it
    with pytest.raises(ShapeError, match="depend on the branches of other Ifs more than 0 rounds"):
        analyze(load_model(model))
