"""Degenerate attributes are input errors (exit 2, one line naming node and attribute), never counted.

Issue 14 item 10: a Conv with dilations 0 or strides 0, a ConvTranspose with strides 0, a
kernel dimension 0, a group that does not divide the channels, a negative or zero Resize
scale... is not a model onnxruntime runs; segcost used to print MACs for it. The checks live
in segcost.ir.opchecks and run through the cost-rule registry before the op's rule.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

X = [1, 4, 8, 8]


def model_of(op_type: str, weights: dict, inputs: list[str] | None = None, x_shape=X, opset: int = 17,
             outputs: int = 1, **attrs) -> onnx.ModelProto:
    names = inputs if inputs is not None else ["x", *weights]
    output_names = [f"y{index}" for index in range(outputs)]
    node = helper.make_node(op_type, names, output_names, name="bad_node", **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_empty_tensor_value_info(name) for name in output_names],
        initializer=[numpy_helper.from_array(np.asarray(value), name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def w(*shape):
    return np.ones(shape, np.float32)


CASES = {
    "conv-dilations-0": (model_of("Conv", {"w": w(8, 4, 3, 3)}, dilations=[0, 0]),
                         "attribute dilations = [0, 0] must be >= 1"),
    "conv-strides-0": (model_of("Conv", {"w": w(8, 4, 3, 3)}, strides=[0, 0]),
                       "attribute strides = [0, 0] must be >= 1"),
    "conv-strides-negative": (model_of("Conv", {"w": w(8, 4, 3, 3)}, strides=[-1, 1]), "attribute strides = [-1, 1]"),
    "conv-pads-negative": (model_of("Conv", {"w": w(8, 4, 3, 3)}, pads=[-1, 0, 0, 0]),
                           "attribute pads = [-1, 0, 0, 0] must be >= 0"),
    "conv-kernel-0": (model_of("Conv", {"w": w(8, 4, 0, 3)}), "weight 'w' has kernel [0, 3]"),
    "conv-kernel-shape-0": (model_of("Conv", {"w": w(8, 4, 3, 3)}, kernel_shape=[0, 3]),
                            "attribute kernel_shape = [0, 3]"),
    "conv-kernel-shape-not-the-weights": (model_of("Conv", {"w": w(8, 4, 3, 3)}, kernel_shape=[5, 5]),
                                          "attribute kernel_shape = [5, 5] does not match the [3, 3] kernel of "
                                          "weight 'w'"),
    "convtranspose-kernel-shape-not-the-weights": (model_of("ConvTranspose", {"w": w(4, 8, 2, 2)}, kernel_shape=[3, 3]),
                                                   "attribute kernel_shape = [3, 3] does not match the [2, 2] kernel"),
    "conv-group-0": (model_of("Conv", {"w": w(8, 4, 3, 3)}, group=0), "attribute group = 0 must be >= 1"),
    "conv-group-not-dividing-input": (model_of("Conv", {"w": w(9, 1, 3, 3)}, group=3),
                                      "attribute group = 3 does not divide the input's 4 channels"),
    "conv-group-not-dividing-output": (model_of("Conv", {"w": w(6, 1, 3, 3)}, group=4),
                                       "attribute group = 4 does not divide the 6 output channels"),
    "convtranspose-strides-0": (model_of("ConvTranspose", {"w": w(4, 8, 2, 2)}, strides=[0, 0]),
                                "attribute strides = [0, 0] must be >= 1"),
    "convtranspose-group-not-dividing": (model_of("ConvTranspose", {"w": w(4, 8, 2, 2)}, group=3),
                                         "attribute group = 3 does not divide the input's 4 channels"),
    "maxpool-kernel-0": (model_of("MaxPool", {}, kernel_shape=[0, 0]), "attribute kernel_shape = [0, 0] must be >= 1"),
    "averagepool-strides-0": (model_of("AveragePool", {}, kernel_shape=[2, 2], strides=[0, 2]),
                              "attribute strides = [0, 2] must be >= 1"),
    "resize-negative-scale": (model_of("Resize", {"s": np.array([1, 1, -2, 2], np.float32)}, ["x", "", "s"],
                                       mode="linear"),
                              "scales [1.0, 1.0, -2.0, 2.0] must all be finite and > 0"),
    "resize-zero-scale": (model_of("Resize", {"s": np.array([1, 1, 0, 2], np.float32)}, ["x", "", "s"]),
                          "must all be finite and > 0"),
    "resize-zero-size": (model_of("Resize", {"sz": np.array([1, 4, 0, 8], np.int64)}, ["x", "", "", "sz"]),
                         "sizes [1, 4, 0, 8] must all be > 0"),
    "upsample-downscale": (model_of("Upsample", {"s": np.array([1, 1, 0.5, 0.5], np.float32)}, ["x", "s"], opset=9),
                           "must all be finite and >= 1"),
    "groupnorm-groups-not-dividing": (model_of("GroupNormalization", {"g": w(4), "b": w(4)}, num_groups=3, opset=21),
                                      "attribute num_groups = 3 does not divide the input's 4 channels"),
    "depthtospace-blocksize-0": (model_of("DepthToSpace", {}, blocksize=0), "attribute blocksize = 0 must be >= 1"),
    "topk-negative-k": (model_of("TopK", {"k": np.array([-1], np.int64)}, outputs=2), "k = (-1,) must be >= 0"),
}


@pytest.mark.parametrize("command", ["analyze", "verify", "cost"])
@pytest.mark.parametrize("case", list(CASES))
def test_degenerate_attribute_is_one_line_exit_2(case, command, run_cli, tmp_path):
    model, message = CASES[case]
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    code, out, err = run_cli(command, str(path))
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segcost: error: "), err
    assert "node 'bad_node'" in lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in err


def test_valid_neighbours_are_still_counted(run_cli, tmp_path):
    """The checks refuse only degenerate values: stride 2, dilation 2, depthwise group, scale 0.5 count."""
    for index, model in enumerate([
        model_of("Conv", {"w": w(8, 1, 3, 3)}, group=4, strides=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2]),
        model_of("ConvTranspose", {"w": w(4, 2, 2, 2)}, group=2, strides=[2, 2]),
        model_of("Resize", {"s": np.array([1, 1, 0.5, 0.5], np.float32)}, ["x", "", "s"], mode="linear"),
    ]):
        path = tmp_path / f"ok{index}.onnx"
        onnx.save(model, path)
        code, _, err = run_cli("analyze", str(path))
        assert code == 0, err
