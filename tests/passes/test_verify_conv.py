"""Grouped-conv structure, the Lite rule and target support findings name the exact layers."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.passes import VerifyGroupedConvPass
from segcost.samples import deeplabv3lite
from segcost.samples.builder import GraphBuilder
from segcost.samples.deeplabv3lite import mobilenetv2_s16
from tests.passes.helpers import load


def _findings(model, rules="current"):
    return VerifyGroupedConvPass(rules=rules)(load(model)).findings


def _lite_model(decoder_group=None, dw_kernel=3, dw_stride=1):
    """Depthwise encoder, ASPP-like fan-out, decoder 3×3 conv with `decoder_group` (None = depthwise)."""
    builder = GraphBuilder()
    features, channels, _, _ = mobilenetv2_s16(builder, "input", width=0.35)
    branches = [builder.conv_bn(features, channels, 32, 1, name=f"aspp.b{i}") for i in range(3)]
    y = builder.node("Concat", branches, "aspp.concat", axis=1)
    group = 96 if decoder_group is None else decoder_group
    y = builder.conv_bn(y, 96, 96, 3, group=group, name="decoder.conv3x3")
    y = builder.conv_bn(y, 96, 96, dw_kernel, stride=dw_stride, group=96, name="decoder.dw_extra")
    y = builder.conv(y, 96, 4, 1, name="head.classifier", bias=True)
    height = 64
    out = height // 16 // dw_stride
    return builder.model("input", (1, 3, height, height), y, (1, 4, out, out))


def test_sample_lite_model_is_clean():
    result = VerifyGroupedConvPass()(load(deeplabv3lite(width=0.35, num_classes=3, height=64, width_px=64)))
    assert result.findings == [] and result.encoder_style == "depthwise"
    assert not result.modified


def test_dense_decoder_conv_breaks_the_lite_rule():
    findings = _findings(_lite_model(decoder_group=1))
    assert [(f.layer, f.rule) for f in findings] == [("decoder.conv3x3", "lite-group")]
    assert "depthwise" in findings[0].reason


def test_grouped_decoder_conv_in_depthwise_model_is_flagged_too():
    findings = _findings(_lite_model(decoder_group=8))
    assert [(f.layer, f.rule) for f in findings] == [("decoder.conv3x3", "lite-group")]


def test_unsupported_depthwise_5x5_stride_1():
    findings = _findings(_lite_model(dw_kernel=5, dw_stride=1))
    assert [(f.layer, f.rule) for f in findings] == [("decoder.dw_extra", "dw-kernel-stride")]
    assert "5x5 stride 1x1" in findings[0].reason and "5x5 s2" in findings[0].reason


def test_depthwise_5x5_stride_2_only_in_legacy_rules():
    model = _lite_model(dw_kernel=5, dw_stride=2)
    assert _findings(model, "current") == []
    legacy = _findings(model, "legacy")
    assert [(f.layer, f.rule) for f in legacy] == [("decoder.dw_extra", "dw-kernel-stride")]


def _single(op_type, x_shape, inits, **attrs):
    graph = helper.make_graph(
        [helper.make_node(op_type, ["x", *[init.name for init in inits]], ["y"], name="layer", **attrs)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_empty_tensor_value_info("y")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("kernel,stride,group,allowed", [(2, 2, 1, True), (4, 2, 1, True), (3, 2, 1, False),
                                                         (4, 2, 4, False)])
def test_conv_transpose_shapes(kernel, stride, group, allowed):
    weight = numpy_helper.from_array(np.zeros((8, 8 // group, kernel, kernel), np.float32), "w")
    findings = _findings(_single("ConvTranspose", [1, 8, 4, 4], [weight], strides=[stride, stride], group=group))
    assert [f.rule for f in findings] == ([] if allowed else ["conv-transpose-shape"])


def test_resize_scale_and_mode():
    scales = numpy_helper.from_array(np.array([1, 1, 3, 3], np.float32), "scales")
    roi = numpy_helper.from_array(np.array([], np.float32), "roi")
    findings = _findings(_single("Resize", [1, 4, 4, 4], [roi, scales], mode="cubic"))
    assert sorted(f.rule for f in findings) == ["resize-mode", "resize-scale", "resize-scale"]


def test_even_kernel_rank_and_argmax_axis():
    weight = numpy_helper.from_array(np.zeros((4, 4, 2, 2), np.float32), "w")
    assert [f.rule for f in _findings(_single("Conv", [1, 4, 8, 8], [weight]))] == ["even-kernel"]
    assert [f.rule for f in _findings(_single("ArgMax", [1, 4, 8, 8], [], axis=2))] == ["argmax-axis"]
    conv1d = numpy_helper.from_array(np.zeros((4, 4, 3), np.float32), "w")
    assert [f.rule for f in _findings(_single("Conv", [1, 4, 8], [conv1d]))] == ["rank-4"]


def test_structural_group_mismatch_is_reported():
    # group 3 does not divide C_out 4 (ONNX shape inference accepts it; the verifier must not)
    weight = numpy_helper.from_array(np.zeros((4, 2, 3, 3), np.float32), "w")
    findings = _findings(_single("Conv", [1, 6, 8, 8], [weight], group=3))
    assert "group-divides-cout" in [f.rule for f in findings]


def test_unknown_rule_set_is_an_input_error():
    from segcost.errors import InputError

    with pytest.raises(InputError, match="unknown rule set"):
        VerifyGroupedConvPass(rules="nope")
