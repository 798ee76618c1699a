"""GridSample and Col2Im cost rules (Mask2Former's deformable attention, MobileViTV2's fold)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model

F = TensorProto.FLOAT


def _model(node, inputs, inits=(), opset=20):
    graph = helper.make_graph([node], "g", inputs, [helper.make_value_info("y", onnx.TypeProto())], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _ints(name, *values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _run(model, feeds):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize(("mode", "opset", "per_element"), [("bilinear", 16, 7), ("linear", 20, 7),
                                                            ("nearest", 20, 0), ("bicubic", 16, 31)])
def test_grid_sample_counts_interpolation_and_grid_points(mode, opset, per_element):
    x = helper.make_tensor_value_info("x", F, [2, 3, 10, 12])
    grid = helper.make_tensor_value_info("grid", F, [2, 5, 7, 2])
    model = _model(helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, name="gs"), [x, grid],
                   opset=opset)
    result = analyze(load_model(model))
    layer = result.layers[0]
    out = _run(model, {"x": np.ones((2, 3, 10, 12), np.float32),
                       "grid": np.zeros((2, 5, 7, 2), np.float32)})
    assert layer.output_shape == list(out.shape) == [2, 3, 5, 7]
    assert layer.status == "counted" and layer.macs == 0  # interpolation is not a MAC (DESIGN)
    assert layer.flops == per_element * 2 * 3 * 5 * 7 + 2 * 2 * (2 * 5 * 7)


@pytest.mark.parametrize(("image", "block", "strides", "dilations", "pads"), [
    ((8, 8), (2, 2), (2, 2), (1, 1), (0, 0, 0, 0)),     # MobileViTV2's fold: disjoint patches, no adds
    ((9, 7), (3, 3), (1, 2), (1, 1), (1, 1, 1, 1)),     # overlapping, padded
    ((10, 11), (3, 2), (2, 1), (2, 3), (0, 1, 2, 0)),   # dilated, asymmetric pads
])
def test_col2im_counts_one_add_per_overlapping_value(image, block, strides, dilations, pads):
    channels, rank = 2, 2
    blocks = [(image[a] + pads[a] + pads[a + rank] - (dilations[a] * (block[a] - 1) + 1)) // strides[a] + 1
              for a in range(rank)]
    length = int(np.prod(blocks))
    x = helper.make_tensor_value_info("x", F, [1, channels * int(np.prod(block)), length])
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"], strides=list(strides),
                            dilations=list(dilations), pads=list(pads), name="fold")
    model = _model(node, [x], [_ints("image", *image), _ints("block", *block)], opset=18)
    # independent count: fold all-ones columns; each position holds how many values landed there
    landed = _run(model, {"x": np.ones((1, channels * int(np.prod(block)), length), np.float32)})
    adds = int(landed.sum() - np.count_nonzero(landed))
    layer = analyze(load_model(model)).layers[0]
    assert layer.output_shape == list(landed.shape) == [1, channels, *image]
    assert layer.status == "counted" and layer.macs == 0 and layer.flops == adds
