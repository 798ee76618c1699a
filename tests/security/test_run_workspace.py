"""Kernel scratch memory is bounded before onnxruntime runs a model (breaker7 R7).

run_bounds bounded the tensors a graph names. A 162-byte three-operand Einsum whose every tensor
is 256 KB made `profile`/`optimize` ask onnxruntime for 16 GiB (the pairwise a·b·c·d partial
result), and the failed allocation read "internal error, please report it".
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.frontends.onnx import load_model
from segcost.targets.workspace import workspace_bytes


def einsum_model(n: int, equation: str = "ab,cd,bd->ac") -> onnx.ModelProto:
    """Einsum of three n x n operands into an n x n output."""
    graph = helper.make_graph([helper.make_node("Einsum", ["A", "B", "C"], ["y"], name="ein", equation=equation)],
                              "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "ABC"],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def conv_transpose_model(channels: int, kernel: int, size: int) -> onnx.ModelProto:
    """ConvTranspose 1 -> `channels`, stride 1, padded to keep size x size: every column overlaps kernel² times."""
    weight = numpy_helper.from_array(np.full((1, channels, kernel, kernel), 0.01, np.float32), "w")
    pad = (kernel - 1) // 2
    graph = helper.make_graph([helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", pads=[pad] * 4)],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])],
                              [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_einsum_scratch_is_the_pairwise_partial_result():
    graph = load_model(einsum_model(8))
    assert workspace_bytes(graph, graph.node("ein")) == 2 * 4 * 8 ** 4          # a, b, c, d all kept after step 1
    graph = load_model(einsum_model(8, "ab,bc,cd->ad"))
    assert workspace_bytes(graph, graph.node("ein")) == 2 * 4 * 8 ** 2          # a chain keeps only a, c
    two = helper.make_graph([helper.make_node("Einsum", ["A", "B"], ["y"], name="ein", equation="ab,bc->ac")], "g",
                            [helper.make_tensor_value_info(name, TensorProto.FLOAT, [8, 8]) for name in "AB"],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 8])])
    graph = load_model(helper.make_model(two, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    assert workspace_bytes(graph, graph.node("ein")) == 0                # two operands: the output itself


def test_conv_transpose_scratch_is_its_col2im_buffer():
    graph = load_model(conv_transpose_model(4, 3, 5))
    assert workspace_bytes(graph, graph.node("up")) == 4 * (4 * 3 * 3 * 5 * 5)


def _quantized_conv(op_type: str, group: int = 1, kernel: int = 3, pads: int = 1) -> onnx.ModelProto:
    """A 16-channel 3x3 conv over 1x16x20x20 as ConvInteger, QLinearConv or Conv between DequantizeLinear nodes."""
    weight = numpy_helper.from_array(np.ones((16, 16 // group, kernel, kernel), np.uint8), "w")
    scalars = [numpy_helper.from_array(np.array(value, dtype), name) for name, value, dtype in
               (("s", 0.1, np.float32), ("z", 0, np.uint8))]
    conv = {"pads": [pads] * 4, "group": group}
    if op_type == "ConvInteger":
        nodes = [helper.make_node("ConvInteger", ["x", "w"], ["y"], name="c", **conv)]
    elif op_type == "QLinearConv":
        nodes = [helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "z", "s", "z"], ["y"], name="c", **conv)]
    else:
        nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"], name="dx"),
                 helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], name="dw"),
                 helper.make_node("Conv", ["xf", "wf"], ["y"], name="c", **conv)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 16, 20, 20])],
                              [helper.make_empty_tensor_value_info("y")], [weight, *scalars])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("op_type", ["ConvInteger", "QLinearConv", "Conv"])
def test_quantized_conv_scratch_is_its_im2col(op_type):
    graph = load_model(_quantized_conv(op_type))
    assert workspace_bytes(graph, graph.node("c")) == 16 * 3 * 3 * 20 * 20        # uint8, whole
    graph = load_model(_quantized_conv(op_type, kernel=1, pads=0))
    assert workspace_bytes(graph, graph.node("c")) == 0                             # pointwise: read in place
    if op_type == "QLinearConv":
        graph = load_model(_quantized_conv(op_type, group=16))
        assert workspace_bytes(graph, graph.node("c")) == 8 * 3 * 3 * 20 * 20   # depthwise: pointers


def test_a_float_conv_has_no_counted_scratch():
    """MLAS segments float Conv's im2col (module docstring of segcost.targets.workspace)."""
    weight = numpy_helper.from_array(np.ones((16, 16, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[1] * 4)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 20, 20])],
                              [helper.make_empty_tensor_value_info("y")], [weight])
    graph = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    assert workspace_bytes(graph, graph.node("c")) == 0


@pytest.fixture
def no_sessions(monkeypatch):
    opened: list = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *args, **kwargs: opened.append(args) or 1 / 0)
    return opened


@pytest.mark.parametrize("command,options", [("profile", ["--runs", "1", "--warmup", "0"]),
                                             ("optimize", ["-o", "OUT"]),
                                             ("calibrate", ["--runs", "1", "-o", "OUT"])])
@pytest.mark.parametrize("model,message", [
    (einsum_model(256), "node 'ein' (Einsum) makes onnxruntime allocate a 34,359,738,368-byte scratch buffer"),
    (conv_transpose_model(64, 15, 256), "node 'up' (ConvTranspose) makes onnxruntime allocate a "
                                        "3,774,873,600-byte scratch buffer")])   # its output is 16 MiB
def test_commands_refuse_a_kernel_scratch_over_the_bound(run_cli, tmp_path, no_sessions, command, options, model,
                                                         message):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(command, str(path), *[str(out) if item == "OUT" else item for item in options])
    assert no_sessions == []
    assert code == 2, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcost: error: ") and message in lines[0], stderr
    assert not out.exists()


ALLOCATION_FAILURE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import segcost.targets.run_bounds as run_bounds
run_bounds.workspace_bytes = lambda graph, node: 0   # as if the scratch were not modelled
from segcost.cli import main
main(["profile", sys.argv[1], "--runs", "1", "--warmup", "0"])
"""


def test_an_onnxruntime_allocation_failure_is_one_clean_line(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(einsum_model(256), path)
    done = subprocess.run([sys.executable, "-c", ALLOCATION_FAILURE, str(path)], capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("segcost: error: onnxruntime could not allocate memory"), lines
    assert "17,179,869,184 bytes" in lines[0] and "internal error" not in lines[0]
