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


@pytest.mark.parametrize("rules", ["current", "legacy", "tvm-tidl", "tidl-09.02"])
def test_depthwise_5x5_stride_1_passes_every_rule_set(rules):
    # both TI documents allow it (edgeai-tidl-tools SDK 9.2 table; TVM/TIDL guide)
    assert _findings(_lite_model(dw_kernel=5, dw_stride=1), rules) == []


def test_depthwise_5x5_stride_2_only_in_the_newer_rule_set():
    model = _lite_model(dw_kernel=5, dw_stride=2)
    assert _findings(model, "current") == []
    legacy = _findings(model, "legacy")
    assert [(f.layer, f.rule) for f in legacy] == [("decoder.dw_extra", "dw-kernel-stride")]
    assert "5x5s2" in legacy[0].reason and "5x5s1" in legacy[0].reason


def test_rule_sets_cite_their_documents():
    from segcost.passes.verify_conv import load_rules, rule_set_names

    assert {"current", "legacy"} <= set(rule_set_names())
    assert load_rules("current").name == "tidl-11.00"     # the newest documented set
    assert "supported_ops_rts_versions.md @ d64aaabb" in load_rules("current").source
    assert "software-dl.ti.com" in load_rules("tvm-tidl").source
    assert "supported_ops_rts_versions.md @ 2378ce12" in load_rules("legacy").source
    assert "1x3s1" in load_rules("tvm-tidl").depthwise and "1x3s1" not in load_rules("legacy").depthwise
    assert "1x3s1" not in load_rules("current").depthwise   # SDK 11.00 row 1 does not list it


def _single(op_type, x_shape, inits, **attrs):
    graph = helper.make_graph(
        [helper.make_node(op_type, ["x", *[init.name for init in inits]], ["y"], name="layer", **attrs)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_empty_tensor_value_info("y")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("rules,kernel,stride,group,allowed", [
    ("current", 2, 2, 1, True), ("current", 4, 2, 1, True), ("tvm-tidl", 3, 2, 1, True), ("legacy", 3, 2, 1, False),
    ("current", 3, 2, 1, False),   # SDK 11.00: "Only 4x4 and 2x2 kernels with 2x2 stride are supported"
    ("legacy", 8, 2, 1, True), ("current", 8, 2, 1, False), ("current", 4, 2, 4, False), ("current", 3, 1, 1, False)])
def test_conv_transpose_shapes(rules, kernel, stride, group, allowed):
    weight = numpy_helper.from_array(np.zeros((8, 8 // group, kernel, kernel), np.float32), "w")
    findings = _findings(_single("ConvTranspose", [1, 8, 4, 4], [weight], strides=[stride, stride], group=group),
                         rules)
    assert [f.rule for f in findings] == ([] if allowed else ["conv-transpose-shape"])


def test_resize_scale_and_mode():
    scales = numpy_helper.from_array(np.array([1, 1, 3, 3], np.float32), "scales")
    roi = numpy_helper.from_array(np.array([], np.float32), "roi")
    findings = _findings(_single("Resize", [1, 4, 4, 4], [roi, scales], mode="cubic",
                                 coordinate_transformation_mode="asymmetric"))
    assert sorted(f.rule for f in findings) == ["resize-mode", "resize-scale", "resize-scale"]


def test_even_kernel_rank_and_argmax_axis():
    weight = numpy_helper.from_array(np.zeros((4, 4, 2, 2), np.float32), "w")
    assert [f.rule for f in _findings(_single("Conv", [1, 4, 8, 8], [weight]), "tvm-tidl")] == ["even-kernel"]
    assert _findings(_single("Conv", [1, 4, 8, 8], [weight])) == []   # SDK 11.00 row 1 no longer forbids it
    assert [f.rule for f in _findings(_single("ArgMax", [1, 4, 8, 8], [], axis=2))] == ["argmax-axis"]
    assert [f.rule for f in _findings(_single("ArgMax", [1, 4, 8, 8], [], axis=-1))] == ["argmax-axis"]
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


@pytest.mark.parametrize("rules", ["current", "legacy"])
@pytest.mark.parametrize("axis", [1, -3])
def test_argmax_over_channels_passes_with_a_negative_axis(rules, axis):
    # -3 on NCHW is the channel axis: the SDK 9.2 table writes it 1, the 11.00 table -3
    assert _findings(_single("ArgMax", [1, 4, 8, 8], [], axis=axis), rules) == []


def test_argmax_axis_out_of_range_is_an_input_error():
    from segcost.errors import InputError

    with pytest.raises(InputError, match="axis = -5 is out of range"):
        _findings(_single("ArgMax", [1, 4, 8, 8], [], axis=-5))


def _binary(op_type, constant):
    """x op c, where c is an initializer, a Constant node or a computed tensor (Relu of x)."""
    value = numpy_helper.from_array(np.full((1, 4, 1, 1), 2.0, np.float32), "c")
    nodes, inits = [], []
    if constant == "initializer":
        inits.append(value)
    elif constant == "node":
        nodes.append(helper.make_node("Constant", [], ["c"], name="const", value=value))
    else:
        nodes.append(helper.make_node("Relu", ["x"], ["c"], name="relu"))
    nodes.append(helper.make_node(op_type, ["x", "c"], ["y"], name="layer"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_empty_tensor_value_info("y")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("rules", ["legacy", "tvm-tidl", "current"])
@pytest.mark.parametrize("op_type", ["Sub", "Div"])
@pytest.mark.parametrize("constant,finding", [("initializer", False), ("node", False), ("computed", True)])
def test_sub_div_need_one_constant_operand(op_type, constant, finding, rules):
    findings = [f.rule for f in _findings(_binary(op_type, constant), rules)]
    # SDK 11.00 row 5: "Both inputs as variable are not supported in Sub"; Div of two computed tensors runs
    finding = finding and (op_type == "Sub" or rules != "current")
    assert findings == (["binary-nonconstant"] if finding else [])


def test_op_outside_the_rule_set_is_a_finding():
    findings = _findings(_single("Erf", [1, 4, 8, 8], []))
    assert [(f.layer, f.rule) for f in findings] == [("layer", "unsupported-op")]


def _depthwise_encoder(builder, stages=3):
    """Stem 3x3 s2 dense conv, then `stages` depthwise-separable blocks at stride 2.

    Returns the features, their channels and each stage's output (the UNet skips).
    """
    y = builder.conv_bn("input", 3, 16, 3, stride=2, name="stem")
    channels, skips = 16, []
    for index in range(stages):
        y = builder.conv_bn(y, channels, channels, 3, stride=2, group=channels, name=f"enc{index}.dw")
        y = builder.conv_bn(y, channels, channels * 2, 1, name=f"enc{index}.pw")
        channels *= 2
        skips.append(y)
    return y, channels, skips


def test_dense_decoder_straight_on_a_depthwise_encoder_is_flagged():
    # no ASPP fan-out, no upsample until the very end: the decoder cannot be "found", the rule still holds
    builder = GraphBuilder()
    y, channels, _ = _depthwise_encoder(builder)
    y = builder.conv_bn(y, channels, channels, 3, name="decoder.conv3x3")
    y = builder.conv(y, channels, 4, 1, name="head.classifier", bias=True)
    y = builder.resize(y, 16, "head.upsample")
    model = builder.model("input", (1, 3, 64, 64), y, (1, 4, 64, 64))
    result = VerifyGroupedConvPass()(load(model))
    assert result.encoder_style == "depthwise"
    assert [(f.layer, f.rule) for f in result.findings] == [("decoder.conv3x3", "lite-group")]


def test_dense_unet_skip_decoder_conv_is_flagged():
    builder = GraphBuilder()
    y, channels, skips = _depthwise_encoder(builder)
    up = builder.resize(y, 4, "dec.up")   # stride 16 -> 4, joined with the stride-4 skip
    y = builder.node("Concat", [up, skips[0]], "dec.concat", axis=1)
    y = builder.conv_bn(y, channels + 32, 32, 3, name="dec.conv3x3")
    y = builder.conv(y, 32, 4, 1, name="head.classifier", bias=True)
    model = builder.model("input", (1, 3, 64, 64), y, (1, 4, 16, 16))
    findings = VerifyGroupedConvPass()(load(model)).findings
    assert [(f.layer, f.rule) for f in findings] == [("dec.conv3x3", "lite-group")]


def test_dense_network_has_no_lite_findings():
    builder = GraphBuilder()
    y = builder.conv_bn("input", 3, 16, 3, stride=2, name="stem")
    y = builder.conv_bn(y, 16, 16, 3, name="body.conv")
    y = builder.conv_bn(y, 16, 16, 3, group=16, name="body.dw")   # one depthwise conv does not make it Lite
    y = builder.conv_bn(y, 16, 16, 3, name="body.conv2")
    model = builder.model("input", (1, 3, 32, 32), y, (1, 16, 16, 16))
    result = VerifyGroupedConvPass()(load(model))
    assert result.encoder_style == "dense" and result.findings == []
