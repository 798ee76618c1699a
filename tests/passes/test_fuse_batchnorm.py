"""Conv/ConvTranspose + BatchNormalization folding: structure, numerics, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.passes import FuseConvBatchNormPass, PassManager
from segcost.samples.builder import GraphBuilder
from tests.passes.helpers import assert_same_outputs, load, op_types


def conv_bn_model(op_type: str = "Conv", group: int = 1, bias: bool = False, channels: int = 8,
                  extra_user: bool = False, shared_weight: bool = False, bn_input_is_graph_input: bool = False):
    rng = np.random.default_rng(0)
    in_channels = out_channels = channels
    if op_type == "Conv":
        weight = rng.standard_normal((out_channels, in_channels // group, 3, 3)).astype(np.float32)
        attrs = {"pads": [1, 1, 1, 1], "group": group}
    else:
        weight = rng.standard_normal((in_channels, out_channels // group, 2, 2)).astype(np.float32)
        attrs = {"strides": [2, 2], "group": group}
    inits = [numpy_helper.from_array(weight, "w")]
    conv_inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), "b"))
        conv_inputs.append("b")
    for name, values in (("gamma", rng.uniform(0.5, 1.5, out_channels)), ("beta", rng.standard_normal(out_channels)),
                         ("mean", rng.standard_normal(out_channels)), ("var", rng.uniform(0.5, 2, out_channels))):
        inits.append(numpy_helper.from_array(values.astype(np.float32), name))
    nodes = [helper.make_node(op_type, conv_inputs, ["c"], name="conv", **attrs),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], name="bn",
                              epsilon=1e-3)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_user:
        nodes.append(helper.make_node("Relu", ["c"], ["r"], name="other"))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    if shared_weight:
        nodes.append(helper.make_node(op_type, ["x", "w"], ["c2"], name="twin", **attrs))
        outputs.append(helper.make_tensor_value_info("c2", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_channels, 6, 6])]
    if bn_input_is_graph_input:
        inits = [init for init in inits if init.name != "var"]
        inputs.append(helper.make_tensor_value_info("var", TensorProto.FLOAT, [out_channels]))
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("op_type", ["Conv", "ConvTranspose"])
@pytest.mark.parametrize("group", [1, 2, 8])
@pytest.mark.parametrize("bias", [False, True])
def test_fold_matches_onnxruntime(op_type, group, bias):
    model = conv_bn_model(op_type, group, bias)
    before = load(model)
    graph = load(model)
    result = FuseConvBatchNormPass()(graph)
    assert result.modified
    assert op_types(result.graph) == [op_type]
    conv = result.graph.node("conv")
    assert conv.outputs == ["y"] and len(conv.inputs) == 3 and conv.meta["created_by"] == "fuse-conv-bn"
    assert_same_outputs(model, before, result.graph)
    assert not FuseConvBatchNormPass()(result.graph).modified  # idempotent


@pytest.mark.parametrize("case,reason", [
    ({"extra_user": True}, "other users"),
    ({"shared_weight": True}, "shared with another node"),
    ({"bn_input_is_graph_input": True}, "not constant"),
])
def test_refusals_are_explained(case, reason):
    graph = load(conv_bn_model(**case))
    fuse = FuseConvBatchNormPass()
    result = fuse(graph)
    assert not result.modified
    assert "BatchNormalization" in op_types(graph)
    assert any(reason in why for _, why in fuse.explanations), fuse.explanations


def test_bn_after_non_conv_is_left_alone():
    builder = GraphBuilder()
    y = builder.node("Relu", ["input"], "relu")
    y = builder.batch_norm(y, 3, "bn")
    graph = load(builder.model("input", (1, 3, 4, 4), y, (1, 3, 4, 4)))
    fuse = FuseConvBatchNormPass()
    assert not fuse(graph).modified
    assert "Relu" in fuse.explanations[0][1]


def test_pipeline_on_sample_removes_every_batchnorm():
    from segcost.samples import deeplabv3lite

    model = deeplabv3lite(width=0.35, num_classes=5, height=64, width_px=64)
    before = load(model)
    graph = load(model)
    result = PassManager([FuseConvBatchNormPass()], fixed_point=True)(graph)
    assert "BatchNormalization" not in op_types(result.graph)
    assert len(result.graph) < len(before)
    assert result.records[0].macs_before == result.records[0].macs_after
    assert_same_outputs(model, before, result.graph)
