"""The SDK 11.00 table's attribute limits (rule set "current" = tidl-11.00): Concat axes, Pad, ArgMax, Resize.

Each limit is a sentence of edgeai-tidl-tools docs/supported_ops_rts_versions.md @ d64aaabb (quoted per
case); the SDK 9.2 table ("legacy") states none of them.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.passes import VerifyGroupedConvPass
from tests.passes.helpers import load


def _model(nodes, inits=(), shapes=((1, 4, 8, 8),), opset=17):
    inputs = [helper.make_tensor_value_info(f"x{i}" if i else "x", TensorProto.FLOAT, list(shape))
              for i, shape in enumerate(shapes)]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_empty_tensor_value_info("y")], initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _rules(model, rules="current"):
    return sorted(f.rule for f in VerifyGroupedConvPass(rules=rules, lite=False)(load(model)).findings)


@pytest.mark.parametrize("axis,shape,expected", [
    (1, (1, 4, 8, 8), []), (-1, (1, 4, 8, 8), []), (2, (1, 4, 8, 8), []),
    (0, (1, 4, 8, 8), ["concat-axis"]),          # "Not supported along the batch dimension"
    (1, (2, 1, 4, 8, 8), ["concat-axis"]),       # axis -4 of rank 5: not one of -3, -2, -1
    (0, (197, 192), []),                         # rank 2: axis 0 is -2 (H), no batch axis
])
def test_concat_axes(axis, shape, expected):
    # row 11: "Only supported for axis values of -3, -2 & -1"
    model = _model([helper.make_node("Concat", ["x", "x1"], ["y"], name="cat", axis=axis)], shapes=(shape, shape))
    assert _rules(model) == expected
    assert _rules(model, "legacy") == []


@pytest.mark.parametrize("mode,pads,expected", [
    ("constant", [0, 0, 1, 1, 0, 0, 1, 1], []),
    ("reflect", [0, 0, 1, 1, 0, 0, 1, 1], ["pad-form"]),        # "Only constant pad mode is supported"
    ("constant", [0, 1, 0, 0, 0, 1, 0, 0], ["pad-form"]),       # "only supported for width/height axes"
])
def test_pad_mode_and_axes(mode, pads, expected):
    pads_init = numpy_helper.from_array(np.array(pads, np.int64), "pads")
    model = _model([helper.make_node("Pad", ["x", "pads"], ["y"], name="pad", mode=mode)], [pads_init])
    assert _rules(model) == expected
    assert _rules(model, "legacy") == []


@pytest.mark.parametrize("attrs,expected", [
    ({}, []), ({"keepdims": 0}, ["argmax-attribute"]), ({"select_last_index": 1}, ["argmax-attribute"])])
def test_argmax_default_attributes(attrs, expected):
    # row 15: "Only keepdims = 1 (default) is supported", "Only select_last_index = 0 (default) is supported"
    model = _model([helper.make_node("ArgMax", ["x"], ["y"], name="am", axis=1, **attrs)])
    assert _rules(model) == expected
    assert _rules(model, "legacy") == []


@pytest.mark.parametrize("attrs,expected", [
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, []),   # align_corners=False
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, ["resize-coordinates"]),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, []),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "round_prefer_ceil"},
     ["resize-coordinates"]),                 # "Only 'floor' nearest mode ... when ... 'asymmetric'"
    ({"mode": "nearest"}, ["resize-coordinates"]),   # ONNX defaults: half_pixel with round_prefer_floor
    ({"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, ["resize-coordinates"]),
    ({"mode": "linear", "antialias": 1}, ["resize-attribute"]),   # "Only default antialias = 0"
])
def test_resize_attributes(attrs, expected):
    # row 16: "Only 'half_pixel', 'pytorch_half_pixel' and 'asymmetric' coordinate_transformation_mode"
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    model = _model([helper.make_node("Resize", ["x", "", "s"], ["y"], name="up", **attrs)], [scales], opset=18)
    assert _rules(model) == expected
    assert _rules(model, "legacy") == []
