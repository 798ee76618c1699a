"""`segcost optimize` compares the written model with the user's input model, never with an intermediate graph.

The int8 line's weights were given against the optimized float graph: when folding had doubled
that graph (HF BEiT), int8 looked like a saving while the written file was twice the input.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.reports.units import human_bytes
from segcost.samples import deeplabv3lite


def _expand_of_shape_model() -> onnx.ModelProto:
    """y = x + Expand(b, Shape(x)): Shape folds to a 4-element constant; the 768-byte Expand stays a node."""
    bias = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(4, 1, 1), "b")
    nodes = [helper.make_node("Shape", ["x"], ["x_shape"], name="shape"),
             helper.make_node("Expand", ["b", "x_shape"], ["b_full"], name="expand"),
             helper.make_node("Add", ["x", "b_full"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 8])], initializer=[bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _expand_to_a_constant_shape_model() -> onnx.ModelProto:
    """y = x + Expand(b[4, 1, 1], [1, 4, 1, 8]): folding makes the 32-element float bias a constant (+80 bytes
    over b and the shape vector it replaces, within fold-constants' 256-byte allowance)."""
    model = _expand_of_shape_model()
    graph = model.graph
    del graph.node[0]   # no Shape: the target is a constant
    graph.node[0].input[1] = "target"
    graph.initializer.append(numpy_helper.from_array(np.array([1, 4, 1, 8], np.int64), "target"))
    return model


def test_growth_of_the_written_model_is_a_warning(run_cli, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(_expand_to_a_constant_shape_model(), path)
    code, out, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"))
    assert code == 0, err
    # the folded bias [1, 4, 1, 8] is 28 more params (112 bytes) than b; the int64 target was none
    line = "the written model is larger than the input model: params 4 -> 32 (+28, +700%); weights 16 -> 128 bytes"
    assert f"warning: {line}" in out and f"segcost: warning: {line}" in err, out + err
    written = onnx.load(tmp_path / "o.onnx")
    assert "Expand" not in {node.op_type for node in written.graph.node}


def test_a_folded_shape_vector_is_no_growth(run_cli, tmp_path):
    """Shape(x) folds to the int64 [1, 4, 6, 8]: a shape vector is no param (it was +4 params, +32 bytes, a
    warning); the 768-byte Expand stays a node."""
    path = tmp_path / "m.onnx"
    onnx.save_model(_expand_of_shape_model(), path)
    code, out, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"))
    assert code == 0, err
    assert "warning:" not in out + err, out + err
    written = onnx.load(tmp_path / "o.onnx")
    assert "Shape" not in {node.op_type for node in written.graph.node}   # folded
    assert "Expand" in {node.op_type for node in written.graph.node}   # folding it was +720 bytes


def test_no_warning_when_the_model_shrinks(run_cli, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save_model(deeplabv3lite(width=0.35, num_classes=3, height=32, width_px=32), path)
    code, out, err = run_cli("optimize", str(path), "-o", str(tmp_path / "o.onnx"))
    assert code == 0, err
    assert "warning:" not in out + err


def test_int8_weights_are_compared_with_the_input_model(run_cli, tmp_path):
    path = tmp_path / "m.onnx"
    model = deeplabv3lite(width=0.35, num_classes=3, height=32, width_px=32)
    onnx.save_model(model, path)
    code, out, err = run_cli("optimize", str(path), "--int8", "--calib-size", "2", "-o", str(tmp_path / "q.onnx"))
    assert code == 0, err
    input_weights = analyze(load_model(model)).totals.weight_bytes
    line = next(line for line in out.splitlines() if line.startswith("int8 MACs"))
    assert f"(input model {human_bytes(input_weights)}, optimized float " in line, line
