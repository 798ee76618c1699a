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


def _one_op(op_type: str, inputs: dict, inits: dict | None = None, opset: int = 18, names: list | None = None,
            outputs: int = 1, **attrs) -> onnx.ModelProto:
    """One `op_type` node "n" over float inputs of the given shapes and constant `inits`."""
    inits = inits or {}
    node = helper.make_node(op_type, names if names is not None else [*inputs, *inits],
                            ["y", *(f"y{index}" for index in range(1, outputs))], name="n", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
                                            for name, shape in inputs.items()],
                              [helper.make_empty_tensor_value_info("y")],
                              [numpy_helper.from_array(value, name) for name, value in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _scratch(model: onnx.ModelProto) -> int:
    graph = load_model(model)
    return workspace_bytes(graph, graph.node("n"))


def _resize(shape, scales, **attrs) -> onnx.ModelProto:
    return _one_op("Resize", {"x": shape}, {"s": np.array(scales, np.float32)}, names=["x", "", "s"], **attrs)


def test_resize_cubic_scratch_is_its_per_channel_cache():
    # 1x3x8x10 -> 16x20: each of the 20 output columns interpolates every input row and 3 border rows once
    assert _scratch(_resize([1, 3, 8, 10], [1, 1, 2, 2], mode="cubic")) == 48 * 20 * (8 + 3)
    assert _scratch(_resize([8, 10], [2, 2], mode="cubic")) == 48 * 20 * (8 + 3)        # a 2-D image


def test_resize_antialias_scratch_is_its_first_pass_image():
    # the horizontal pass: C x H_in x W_out floats, NCHW or NHWC
    assert _scratch(_resize([1, 3, 8, 10], [1, 1, 2, 2], mode="linear", antialias=1)) == 3 * 8 * 20 * 4
    assert _scratch(_resize([1, 8, 10, 3], [1, 2, 2, 1], mode="linear", antialias=1)) == 3 * 8 * 20 * 4
    assert _scratch(_resize([1, 3, 8, 10], [1, 1, 0.5, 0.5], mode="cubic", antialias=1)) == 3 * 8 * 5 * 4
    for attrs in ({"mode": "linear"}, {"mode": "nearest"}, {"mode": "nearest", "antialias": 1}):
        assert _scratch(_resize([1, 3, 8, 10], [1, 1, 2, 2], **attrs)) == 0   # index/weight tables only


def test_grid_sample_scratch_is_its_bilinear_sampling_plan():
    inputs = {"x": [2, 3, 5, 6], "grid": [2, 7, 9, 2]}
    assert _scratch(_one_op("GridSample", inputs, opset=20)) == 56 * 7 * 9        # one plan per grid point
    assert _scratch(_one_op("GridSample", inputs, opset=16, mode="bilinear")) == 56 * 7 * 9
    for attrs in ({"align_corners": 1}, {"mode": "nearest"}, {"mode": "cubic"}, {"padding_mode": "border"}):
        assert _scratch(_one_op("GridSample", inputs, opset=20, **attrs)) == 0     # sampled in place


def test_top_k_scratch_is_an_index_per_element_of_the_axis():
    def top_k(shape, k, **attrs):
        return _scratch(_one_op("TopK", {"x": shape}, {"k": np.array([k], np.int64)}, outputs=2, **attrs))

    assert top_k([1, 1000], 200) == 8 * 1000     # log2(200)/log2(1000) = 0.77: nth_element over all 1000 indices
    assert top_k([1000, 1], 200, axis=0) == 8 * 1000
    assert top_k([1, 1000], 100) == 0            # 0.67: a heap of k indices
    assert top_k([1, 1000], 3) == top_k([1, 1000], 1) == 0


def test_non_zero_scratch_is_a_coordinate_per_element():
    """Its output's size is data: the rule reads the input shape only."""
    assert _scratch(_one_op("NonZero", {"x": [4, 5]})) == 8 * 2 * 20
    assert _scratch(_one_op("NonZero", {"x": [3, 4, 5]})) == 8 * 3 * 60


def test_unique_scratch_bounds_every_element_distinct():
    assert _scratch(_one_op("Unique", {"x": [100]})) == 140 * 100
    assert _scratch(_one_op("Unique", {"x": [10, 10]})) == 140 * 100           # flattened
    # axis 0 of 6 slices of 4: reserves of 8 and 24/2 bytes per element, 96 per slice, the slices' copies
    assert _scratch(_one_op("Unique", {"x": [6, 4]}, axis=0)) == 8 * 24 + 12 * 24 + 96 * 6 + 4 * 24


def cubic_resize_model() -> onnx.ModelProto:
    """1x1x4096x1024 -> 4096x8192 bicubic: a 128 MiB output, a 1.6 GB per-channel cache."""
    return _resize([1, 1, 4096, 1024], [1, 1, 1, 8], mode="cubic")


def grid_sample_model() -> onnx.ModelProto:
    """A 4480x4480 grid (153 MB) over a 1x1x8x8 image: a 1.1 GB sampling plan."""
    return _one_op("GridSample", {"x": [1, 1, 8, 8], "grid": [1, 4480, 4480, 2]}, opset=20)


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
                                        "3,774,873,600-byte scratch buffer"),   # its output is 16 MiB
    (cubic_resize_model(), "node 'n' (Resize) makes onnxruntime allocate a 1,611,792,384-byte scratch buffer"),
    (grid_sample_model(), "node 'n' (GridSample) makes onnxruntime allocate a 1,123,942,400-byte scratch buffer")])
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
