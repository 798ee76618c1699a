"""segcost.shapes: run-time shape chains resolved, declared shapes never beat computed ones (issue 15)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.errors import ShapeError
from segcost.frontends.onnx import load_model

F = TensorProto.FLOAT


def _w(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _model(nodes, inputs, outputs, inits=(), value_info=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits), value_info=list(value_info))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _int(name: str, *values: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def chain_model(opset: int = 17) -> onnx.ModelProto:
    """Conv → Reshape whose target is Shape → Gather → Cast(float) → Div → Cast(int64) → Concat → Conv.

    The legacy torch exporter writes `x.view(n, c, h // 2, -1)` this way (through float when
    the size is traced as a tensor); onnx's data propagation stops at the float Div, so the
    second Conv has no input shape: 8x16x16 → 8x8x32, conv2 MACs = 8·8·9·8·32 = 147,456.
    """
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["y"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Shape", ["y"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "two"], ["h"], axis=0, name="gather"),
        helper.make_node("Cast", ["h"], ["hf"], to=F, name="cast_f"),
        helper.make_node("Div", ["hf", "half"], ["hd"], name="div"),
        helper.make_node("Cast", ["hd"], ["hi"], to=TensorProto.INT64, name="cast_i"),
        helper.make_node("Unsqueeze", ["hi", "zero"], ["hu"], name="unsqueeze"),
        helper.make_node("Concat", ["nc", "hu", "minus_one"], ["target"], axis=0, name="concat"),
        helper.make_node("Reshape", ["y", "target"], ["r"], name="reshape"),
        helper.make_node("Conv", ["r", "w2"], ["z"], pads=[1, 1, 1, 1], name="conv2"),
    ]
    inits = [numpy_helper.from_array(_w(8, 3, 3, 3), "w1"), numpy_helper.from_array(_w(8, 8, 3, 3), "w2"),
             numpy_helper.from_array(np.array(2, dtype=np.int64), "two"),
             numpy_helper.from_array(np.array(2.0, dtype=np.float32), "half"),
             _int("zero", 0), _int("nc", 1, 8), _int("minus_one", -1)]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 3, 16, 16])],
                  [helper.make_tensor_value_info("z", F, None)], inits, opset=opset)


CONV1_MACS = 8 * 3 * 9 * 16 * 16
CONV2_MACS = 8 * 8 * 9 * 8 * 32


def test_onnx_inference_alone_leaves_the_chain_open():
    """The premise: without segcost's evaluation the Reshape output has no static shape."""
    inferred = onnx.shape_inference.infer_shapes(chain_model(), data_prop=True)
    shapes = {value.name: value for value in inferred.graph.value_info}
    dims = shapes["r"].type.tensor_type.shape.dim if "r" in shapes else []
    assert not dims or not all(dim.HasField("dim_value") for dim in dims)


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_shape_chain_with_static_inputs_resolves_exactly(opset):
    graph = load_model(chain_model(opset))
    assert graph.shape("r") == (1, 8, 8, 32)
    assert graph.shape("z") == (1, 8, 8, 32)
    result = analyze(graph)
    assert result.totals.macs == CONV1_MACS + CONV2_MACS
    assert not result.warnings


def test_chain_resolution_does_not_change_the_graph():
    graph = load_model(chain_model())
    assert [graph.node(key).op_type for key in graph.topological_order()].count("Shape") == 1
    assert "target" not in graph.initializers


def test_symbolic_input_is_not_evaluated_and_names_the_input():
    model = chain_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    graph = load_model(model)
    with pytest.raises(ShapeError, match="symbolic dimension 'H'"):
        analyze(graph)
    assert analyze(load_model(model, {"x": (1, 3, 32, 16)})).totals.macs == 8 * 3 * 9 * 32 * 16 + 8 * 8 * 9 * 16 * 32


def stale_model(where: str) -> onnx.ModelProto:
    """conv1 → relu → conv2 on 1x3x32x32, with tensor r declared 1x8x96x96 (9x the true size)."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["y"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["y"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["z"], pads=[1, 1, 1, 1], name="conv2")]
    stale = helper.make_tensor_value_info("r", F, [1, 8, 96, 96])
    outputs = [helper.make_tensor_value_info("z", F, [1, 8, 32, 32])]
    value_info = []
    if where == "value_info":
        value_info = [stale]
    elif where == "output":   # r is also a graph output that conv2 reads
        outputs.append(stale)
    elif where == "final":
        outputs = [helper.make_tensor_value_info("z", F, [1, 8, 96, 96])]
    inits = [numpy_helper.from_array(_w(8, 3, 3, 3), "w1"), numpy_helper.from_array(_w(8, 8, 3, 3), "w2")]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 3, 32, 32])], outputs, inits, value_info)


@pytest.mark.parametrize("where,tensor", [("value_info", "r"), ("output", "r"), ("final", "z")])
def test_declared_shape_never_beats_the_computed_one(where, tensor):
    graph = load_model(stale_model(where))
    assert graph.shape(tensor) == (1, 8, 32, 32)
    result = analyze(graph)
    assert result.totals.macs == 8 * 3 * 9 * 32 * 32 + 8 * 8 * 9 * 32 * 32
    conv2 = next(layer for layer in result.layers if layer.name == "conv2")
    assert conv2.activation_bytes == (8 * 32 * 32 + 8 * 32 * 32) * 4
    message = f"tensor {tensor!r}: the file declares shape [1, 8, 96, 96], computed [1, 8, 32, 32]"
    assert any(message in warning for warning in result.warnings), result.warnings
    assert not any("non-strict" in warning for warning in result.warnings)


def test_matching_declared_shapes_are_not_reported():
    result = analyze(load_model(stale_model("none")))
    assert not result.warnings


def test_declared_shapes_describe_other_sizes_under_an_override():
    result = analyze(load_model(stale_model("value_info"), {"x": (1, 3, 64, 64)}))
    assert result.totals.macs == (8 * 3 * 9 + 8 * 8 * 9) * 64 * 64
    assert not result.warnings


def custom_op_model(declare: bool) -> onnx.ModelProto:
    """conv1 → a custom op (no shape inference) → conv2 → relu → conv3; its output optionally declared."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["y"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Mystery", ["y"], ["m"], domain="com.example", name="mystery"),
             helper.make_node("Conv", ["m", "w2"], ["c"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Relu", ["c"], ["rc"], name="relu"),
             helper.make_node("Conv", ["rc", "w2"], ["z"], pads=[1, 1, 1, 1], name="conv3")]
    value_info = [helper.make_tensor_value_info("m", F, [1, 8, 16, 16])] if declare else []
    inits = [numpy_helper.from_array(_w(8, 3, 3, 3), "w1"), numpy_helper.from_array(_w(8, 8, 3, 3), "w2")]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, [1, 3, 16, 16])],
                   [helper.make_tensor_value_info("z", F, None)], inits, value_info)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


def test_a_declared_shape_fills_what_nothing_computes_and_reaches_downstream_layers():
    result = analyze(load_model(custom_op_model(declare=True)))
    per_layer = {layer.name: layer.macs for layer in result.layers}
    assert per_layer["conv3"] == per_layer["conv2"] == 8 * 8 * 9 * 16 * 16


def test_unresolvable_shape_with_static_inputs_does_not_ask_for_input_shape():
    with pytest.raises(ShapeError) as error:
        analyze(load_model(custom_op_model(declare=False)))
    assert "--input-shape" not in str(error.value)
    assert "'m'" in str(error.value)


def test_cli_reports_the_conflict_and_exact_macs(tmp_path, run_cli):
    path = tmp_path / "stale.onnx"
    onnx.save(stale_model("output"), path)
    code, out, err = run_cli("analyze", str(path))
    assert code == 0, err
    assert "tensor 'r': the file declares shape [1, 8, 96, 96], computed [1, 8, 32, 32]" in out + err
    assert f"{8 * 3 * 9 * 32 * 32 + 8 * 8 * 9 * 32 * 32:,} MACs" in out


def _fresh_modules(code: str) -> set[str]:
    """Modules loaded by running `code` in a new interpreter."""
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    return set(result.stdout.split())


def test_shapes_layer_imports_only_ir_and_frontends_no_passes():
    shapes = _fresh_modules("import segcost.shapes")
    assert not {name for name in shapes if name.startswith(("segcost.frontends", "segcost.passes",
                                                                 "segcost.analyzer"))}
    frontend = _fresh_modules("import segcost.frontends.onnx")
    assert not {name for name in frontend if name.startswith(("segcost.passes", "segcost.analyzer"))}


def test_a_resolved_model_loads_without_onnxruntime_or_torch(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(stale_model("none"), path)
    loaded = _fresh_modules(f"from segcost.frontends.onnx import load\nload({str(path)!r})")
    assert "onnxruntime" not in loaded and "torch" not in loaded


def test_a_stale_declared_shape_behind_a_shape_chain_loses_to_the_evaluated_one():
    """The file was exported at another size: r is declared 1x8x64x64 where onnx alone cannot say.

    Before, the declaration filled the gap and conv2 counted 16x its MACs.
    """
    model = chain_model()
    model.graph.value_info.append(helper.make_tensor_value_info("r", F, [1, 8, 64, 64]))
    result = analyze(load_model(model))
    assert result.totals.macs == CONV1_MACS + CONV2_MACS
    assert any("tensor 'r': the file declares shape [1, 8, 64, 64], computed [1, 8, 8, 32]" in warning
               for warning in result.warnings), result.warnings


def test_weights_in_constant_nodes_stay_out_of_every_inference_run(monkeypatch):
    """paddle2onnx stores every weight in a Constant node: each inference run (one per chain
    level) then serialized them all. They are declared as typed inputs, as weight initializers are."""
    model = chain_model()
    weights = {init.name: init for init in model.graph.initializer if init.name in ("w1", "w2")}
    kept = [init for init in model.graph.initializer if init.name not in weights]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    constants = [helper.make_node("Constant", [], [name], value=init, name=f"const_{name}")
                 for name, init in weights.items()]
    nodes = [*constants, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    shells: list[onnx.ModelProto] = []
    infer = onnx.shape_inference.infer_shapes

    def spy(shell, *args, **kwargs):
        shells.append(shell)
        return infer(shell, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", spy)
    graph = load_model(model)
    assert graph.shape("z") == (1, 8, 8, 32)
    assert analyze(graph).totals.macs == CONV1_MACS + CONV2_MACS
    assert len(shells) >= 2  # the chain took a second run
    assert {"w1", "w2"} <= {value.name for value in shells[0].graph.input}
    for shell in shells:   # later runs infer only the open part (shapes.open_part): w2 at most
        assert not [node.output[0] for node in shell.graph.node if node.op_type == "Constant"]
        assert not {"w1", "w2"} & {init.name for init in shell.graph.initializer}


@pytest.mark.parametrize("constant_weights", [False, True])
def test_the_inference_shell_is_the_same_however_it_is_copied(monkeypatch, tmp_path, constant_weights):
    """The whole graph copied at once (then cleared but for its nodes) gives the shell copied node by
    node, and the shell assembled from the file's node fields (a file loaded by path); weights are
    declared as typed inputs exactly as onnx.helper declares them."""
    import segcost.shapes.infer as shapes_infer
    from segcost.frontends.onnx import load, load_model

    model = chain_model()
    model.graph.doc_string = "doc"
    model.graph.value_info.append(helper.make_tensor_value_info("y", F, [1, 8, 16, 16]))
    model.graph.metadata_props.add(key="k", value="v")
    model.graph.quantization_annotation.add(tensor_name="y")
    if constant_weights:   # a weight in a Constant node: the node-by-node path that leaves it out
        weight = next(init for init in model.graph.initializer if init.name == "w2")
        model.graph.node.insert(0, helper.make_node("Constant", [], ["w2"], value=weight, name="const_w2"))
        model.graph.initializer.remove(weight)
    shells = []
    real = shapes_infer._shell_from_model

    def spy(*args):
        shell = real(*args)   # a message, or its bytes when assembled from the file's node fields
        shells.append(onnx.ModelProto.FromString(shell if isinstance(shell, bytes) else shell.SerializeToString()))
        return real(*args)   # as built (later rounds edit it)

    monkeypatch.setattr(shapes_infer, "_shell_from_model", spy)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    load(path)
    load_model(model)
    monkeypatch.setattr(shapes_infer, "COPY_GRAPH_MAX_INLINE_BYTES", -1)
    load_model(model)
    assert shells.pop(0).SerializeToString() == shells[0].SerializeToString()
    assert shells[0].SerializeToString() == shells[1].SerializeToString()
    assert [node.name for node in shells[0].graph.node] == [node.name for node in model.graph.node
                                                          if node.name != "const_w2"]
    declared = {value.name: value for value in shells[0].graph.input}
    assert set(declared) == {"x", "w1", "w2"}   # small integer constants stay initializers
    assert declared["w1"] == helper.make_tensor_value_info("w1", F, [8, 3, 3, 3])
    assert not shells[0].graph.value_info and not shells[0].graph.doc_string
    assert not shells[0].graph.metadata_props and not shells[0].graph.quantization_annotation


@pytest.mark.parametrize("verified", [False, True])
def test_unresolved_means_a_consumed_tensor_without_a_static_shape(verified):
    """With `verified` (the loader's graphs) the tables are looked at first; the answer is the same."""
    from segcost.ir import Graph, Initializer, Node, TensorInfo, verify_graph
    from segcost.shapes import infer

    def _unresolved(graph):
        verify_graph(graph)
        return infer._unresolved(graph, verified)

    graph = Graph()
    graph.inputs = ["x"]
    graph.initializers["w"] = Initializer("w", F, (2,), array=np.ones(2, np.float32))
    graph.add_nodes([("a", Node("a", "Add", inputs=["x", "w"], outputs=["y"])),
                     ("b", Node("b", "Relu", inputs=["y", ""], outputs=["z"]))])
    graph.tensors.update({name: TensorInfo(name, F, (1, 2)) for name in ("x", "y")})
    assert not _unresolved(graph)   # w is a weight, "" no tensor, z read by nobody
    graph.tensors["z"] = TensorInfo("z", F, ("n", 2))
    assert not _unresolved(graph)
    for shape in [("n", 2), (None, 2), None]:
        graph.tensors["y"] = TensorInfo("y", F, shape)
        assert _unresolved(graph)
    graph.tensors["y"] = graph.tensors["z"] = TensorInfo("y", F, (1, 2))
    assert not _unresolved(graph)
    for name in ("x", "y"):   # an input, a node's output without a type
        known = graph.tensors.pop(name)
        assert _unresolved(graph)
        graph.tensors[name] = known
