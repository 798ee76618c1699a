"""Hand-computed MACs/FLOPs for every cost rule (closed-form integers, exact equality)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.errors import InputError, ShapeError
from segcost.frontends.onnx import load_model
from tests.conftest import layer_of, single_op_model, weight


@pytest.mark.parametrize("group", [1, 4, 16])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_groups(group, bias):
    weights = {"w": weight(32, 16 // group, 3, 3)}
    if bias:
        weights["b"] = weight(32)
    model = single_op_model("Conv", {"x": [1, 16, 20, 30]}, weights, pads=[1, 1, 1, 1], group=group)
    layer = layer_of(model)
    assert layer.macs == 20 * 30 * 32 * (16 // group) * 9
    assert layer.flops == 2 * layer.macs + (20 * 30 * 32 if bias else 0)
    assert layer.output_shape == [1, 32, 20, 30]
    assert layer.kind == {1: "dense", 4: "grouped", 16: "depthwise"}[group]  # 16: multiplier-2 depthwise


def test_depthwise_24_channels():
    """24→24, g=24, k3: 24·9·Hout·Wout (USER-NEEDS 1)."""
    model = single_op_model("Conv", {"x": [1, 24, 56, 56]}, {"w": weight(24, 1, 3, 3)}, group=24,
                            strides=[2, 2], pads=[1, 1, 1, 1])
    layer = layer_of(model)
    assert layer.output_shape == [1, 24, 28, 28]
    assert layer.macs == 24 * 9 * 28 * 28
    assert layer.kind == "depthwise" and layer.group == 24 and layer.stride == [2, 2]


def test_depthwise_multiplier_is_grouped_with_one_input_channel():
    model = single_op_model("Conv", {"x": [1, 8, 10, 10]}, {"w": weight(16, 1, 3, 3)}, group=8, pads=[1, 1, 1, 1])
    layer = layer_of(model)
    assert layer.macs == 16 * 9 * 100
    assert layer.kind == "depthwise"


def test_conv_dilated_strided_asymmetric_pads():
    # H: (17 + 1 + 2 - 2·(3−1) − 1) // 2 + 1 = 8; W: (23 + 0 + 0 − 2·(5−1) − 1) // 3 + 1 = 5
    model = single_op_model("Conv", {"x": [2, 6, 17, 23]}, {"w": weight(10, 3, 3, 5)}, group=2,
                            strides=[2, 3], dilations=[2, 2], pads=[1, 0, 2, 0])
    layer = layer_of(model)
    assert layer.output_shape == [2, 10, 8, 5]
    assert layer.macs == 2 * 10 * 8 * 5 * 3 * 3 * 5


@pytest.mark.parametrize("auto_pad,expected_hw", [("SAME_UPPER", (10, 8)), ("SAME_LOWER", (10, 8)),
                                                   ("VALID", (9, 7))])
def test_conv_auto_pad(auto_pad, expected_hw):
    model = single_op_model("Conv", {"x": [1, 4, 19, 15]}, {"w": weight(8, 4, 3, 3)}, strides=[2, 2],
                            auto_pad=auto_pad)
    layer = layer_of(model)
    assert layer.output_shape == [1, 8, *expected_hw]
    assert layer.macs == 8 * expected_hw[0] * expected_hw[1] * 4 * 9


def test_conv_1d_and_3d():
    conv1d = single_op_model("Conv", {"x": [1, 4, 100]}, {"w": weight(6, 4, 5)}, pads=[2, 2])
    assert layer_of(conv1d).macs == 100 * 6 * 4 * 5
    conv3d = single_op_model("Conv", {"x": [1, 2, 8, 9, 10]}, {"w": weight(4, 2, 3, 3, 3)})
    assert layer_of(conv3d).macs == 6 * 7 * 8 * 4 * 2 * 27


def test_conv_transpose_k2s2_user_needs_48():
    """ConvTranspose2d(3→1, k=2, s=2) on 1×3×2×2 reports 48 MACs (USER-NEEDS 1)."""
    model = single_op_model("ConvTranspose", {"x": [1, 3, 2, 2]}, {"w": weight(3, 1, 2, 2)}, strides=[2, 2])
    layer = layer_of(model)
    assert layer.macs == 48
    assert layer.output_shape == [1, 1, 4, 4]


def test_conv_transpose_k4s2_output_padding_group():
    # out = 2·(5−1) + 1 + (4−1) + 1 − (1+1) = 11; MACs = N·C_in·H_in·W_in·(C_out/g)·k²
    model = single_op_model("ConvTranspose", {"x": [1, 8, 5, 5]}, {"w": weight(8, 3, 4, 4), "b": weight(6)},
                            strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1], group=2)
    layer = layer_of(model)
    assert layer.output_shape == [1, 6, 11, 11]
    assert layer.macs == 8 * 25 * 3 * 16
    assert layer.flops == 2 * layer.macs + 6 * 11 * 11


def test_conv_transpose_output_shape_attribute():
    model = single_op_model("ConvTranspose", {"x": [1, 4, 7, 7]}, {"w": weight(4, 2, 3, 3)}, strides=[2, 2],
                            output_shape=[14, 14])
    layer = layer_of(model)
    assert layer.output_shape == [1, 2, 14, 14]
    assert layer.macs == 4 * 49 * 2 * 9


def test_gemm_transposed_with_bias():
    model = single_op_model("Gemm", {"a": [64, 128]}, {"b": weight(10, 128), "c": weight(10)}, transB=1)
    layer = layer_of(model)
    assert layer.macs == 64 * 10 * 128
    assert layer.flops == 2 * layer.macs + 64 * 10


@pytest.mark.parametrize("a_shape,b_shape,macs", [
    ([8, 32, 64], [8, 64, 16], 8 * 32 * 16 * 64),           # batched
    ([2, 1, 32, 64], [3, 64, 16], 6 * 32 * 16 * 64),       # broadcast batch
    ([64], [64, 16], 16 * 64),                              # 1-D left operand
    ([5, 32, 64], [64], 5 * 32 * 64),                       # 1-D right operand
])
def test_matmul(a_shape, b_shape, macs):
    model = single_op_model("MatMul", {"a": a_shape, "b": b_shape})
    layer = layer_of(model)
    assert layer.macs == macs
    assert layer.flops == 2 * macs


def test_matmul_bad_inner_dim_is_an_error():
    with pytest.raises(ShapeError):
        layer_of(single_op_model("MatMul", {"a": [4, 5]}, {"b": weight(6, 7)}))


def _lstm_model(steps: int):
    hidden, inputs = 20, 12
    return single_op_model("LSTM", {"x": [steps, 3, inputs]},
                           {"w": weight(1, 4 * hidden, inputs), "r": weight(1, 4 * hidden, hidden)},
                           hidden_size=hidden)


def test_lstm_scales_with_steps():
    one, hundred = layer_of(_lstm_model(1)), layer_of(_lstm_model(100))
    assert one.macs == 3 * 4 * 20 * (12 + 20)
    assert hundred.macs == 100 * one.macs


@pytest.mark.parametrize("op_type,per_element", [("Relu", 1), ("Sigmoid", 4), ("HardSwish", 4), ("LeakyRelu", 2),
                                                 ("Tanh", 1), ("Softmax", 4)])
def test_activations(op_type, per_element):
    layer = layer_of(single_op_model(op_type, {"x": [1, 8, 4, 5]}))
    assert layer.macs == 0
    assert layer.flops == per_element * 160


def test_clip_and_binary_ops():
    clip = single_op_model("Clip", {"x": [1, 8, 4, 5]}, {"lo": np.float32(0), "hi": np.float32(6)})
    assert layer_of(clip).flops == 2 * 160
    add = single_op_model("Add", {"a": [1, 8, 4, 5], "b": [1, 8, 1, 1]})
    assert layer_of(add).flops == 160
    total = single_op_model("Sum", {"a": [2, 3], "b": [2, 3], "c": [2, 3]})
    assert layer_of(total).flops == 2 * 6
    concat = single_op_model("Concat", {"a": [1, 2, 4, 4], "b": [1, 3, 4, 4]}, axis=1)
    layer = layer_of(concat)
    assert (layer.flops, layer.status, layer.output_shape) == (0, "zero_by_convention", [1, 5, 4, 4])


def test_batchnorm_params_and_flops():
    stats = {name: weight(8) for name in ("scale", "bias", "mean", "var")}
    layer = layer_of(single_op_model("BatchNormalization", {"x": [2, 8, 3, 3]}, stats))
    assert (layer.macs, layer.flops, layer.params, layer.weight_bytes) == (0, 2 * 144, 32, 128)


def test_pooling():
    maxpool = single_op_model("MaxPool", {"x": [1, 4, 8, 8]}, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    layer = layer_of(maxpool)
    assert layer.output_shape == [1, 4, 4, 4] and layer.flops == 64 * 9
    gap = layer_of(single_op_model("GlobalAveragePool", {"x": [1, 4, 8, 8]}))
    assert gap.flops == 256 and gap.output_shape == [1, 4, 1, 1]


def test_resize_modes():
    scales = {"roi": np.array([], np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}
    linear = single_op_model("Resize", {"x": [1, 4, 8, 8]}, scales, mode="linear")
    layer = layer_of(linear)
    assert layer.output_shape == [1, 4, 16, 16]
    assert layer.flops == 7 * 4 * 256  # 4 neighbours: 4 mul + 3 add
    nearest = layer_of(single_op_model("Resize", {"x": [1, 4, 8, 8]}, scales, mode="nearest"))
    assert (nearest.flops, nearest.status) == (0, "zero_by_convention")


def test_argmax_and_shape_ops():
    argmax = layer_of(single_op_model("ArgMax", {"x": [1, 21, 10, 10]}, axis=1, keepdims=1))
    assert argmax.flops == 2100 and argmax.output_shape == [1, 1, 10, 10]
    transpose = layer_of(single_op_model("Transpose", {"x": [1, 2, 3, 4]}, perm=[0, 2, 3, 1]))
    assert transpose.output_shape == [1, 3, 4, 2] and transpose.status == "zero_by_convention"
    flatten = layer_of(single_op_model("Flatten", {"x": [2, 3, 4, 5]}, axis=1))
    assert flatten.output_shape == [2, 60]
    reshape = single_op_model("Reshape", {"x": [2, 3, 4]}, {"shape": np.array([6, -1], np.int64)})
    assert layer_of(reshape).output_shape == [6, 4]


def test_quantized_forms_count_like_float():
    x = {"x": [1, 8, 10, 10]}
    qconv = single_op_model(
        "QLinearConv", x,
        {"xs": np.float32(0.1), "xz": np.uint8(128), "w": weight(16, 8, 3, 3, dtype=np.int8),
         "ws": np.float32(0.05), "wz": np.int8(0), "ys": np.float32(0.2), "yz": np.uint8(128)},
        pads=[1, 1, 1, 1], dtype=TensorProto.UINT8)
    assert layer_of(qconv).macs == 100 * 16 * 8 * 9
    conv_integer = single_op_model("ConvInteger", x, {"w": weight(16, 8, 3, 3, dtype=np.int8)},
                                   pads=[1, 1, 1, 1], dtype=TensorProto.INT8)
    assert layer_of(conv_integer).macs == 100 * 16 * 8 * 9
    matmul_integer = single_op_model("MatMulInteger", {"a": [4, 32]}, {"b": weight(32, 8, dtype=np.int8)},
                                     dtype=TensorProto.INT8)
    assert layer_of(matmul_integer).macs == 4 * 32 * 8
    quantize = single_op_model("QuantizeLinear", {"x": [1, 8, 4, 4]}, {"s": np.float32(0.1), "z": np.int8(0)})
    assert layer_of(quantize).flops == 3 * 128
    dequantize = single_op_model("DequantizeLinear", {"x": [1, 8, 4, 4]}, {"s": np.float32(0.1), "z": np.int8(0)},
                                 dtype=TensorProto.INT8)
    assert layer_of(dequantize).flops == 2 * 128


def test_unknown_op_is_reported_not_counted():
    model = single_op_model("MySpecialOp", {"x": [1, 4]}, domain="com.example", y_shape=[1, 4])
    layer = layer_of(model)
    assert layer.status == "unsupported" and layer.macs == 0


def test_conv_with_unknown_input_shape_is_an_error():
    model = single_op_model("Conv", {"x": [1, 4, "H", "W"]}, {"w": weight(8, 4, 3, 3)})
    with pytest.raises(ShapeError, match="symbolic dimension 'H'"):
        layer_of(model)


def test_batch_scales_macs_exactly():
    model = single_op_model("Conv", {"x": ["N", 3, 32, 32]}, {"w": weight(8, 3, 3, 3)})
    one = layer_of(model, x=(1, 3, 32, 32)).macs
    assert layer_of(model, x=(4, 3, 32, 32)).macs == 4 * one


# -- opset forms: operands read through segcost.ir.opforms --------------------------------------------
def graph_model(nodes, inputs: dict, initializers: dict | None = None, opset: int = 17, domains: dict | None = None,
                dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A model of `nodes` (the last one named 'node' by the caller) with float graph inputs."""
    graph = helper.make_graph(
        nodes, "forms", [helper.make_tensor_value_info(name, dtype, shape) for name, shape in inputs.items()],
        [helper.make_empty_tensor_value_info(nodes[-1].output[0])],
        initializer=[numpy_helper.from_array(np.asarray(value), name) for name, value in (initializers or {}).items()])
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in (domains or {}).items())]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def constant(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"const_{name}",
                            value=numpy_helper.from_array(np.asarray(value), name))


@pytest.mark.parametrize("opset,inputs,consts,attrs,per_element", [
    (10, ["x"], {}, {"min": 0.0, "max": 6.0}, 2),            # attributes before opset 11
    (10, ["x"], {}, {"min": 0.0}, 1),
    (10, ["x"], {}, {}, 0),
    (13, ["x", "lo"], {"lo": np.float32(0)}, {}, 1),          # Clip(x, 0): a ReLU, max omitted
    (13, ["x", "", "hi"], {"hi": np.float32(6)}, {}, 1),      # empty min name: absent
    (13, ["x", "lo", "hi"], {"lo": np.float32(0), "hi": np.float32(6)}, {}, 2),
    (13, ["x"], {}, {}, 0),
])
def test_clip_counts_the_bounds_its_opset_form_gives(opset, inputs, consts, attrs, per_element):
    model = single_op_model("Clip", {"x": [1, 8, 4, 5]}, consts, inputs=inputs, opset=opset, **attrs)
    assert layer_of(model).flops == per_element * 160


def test_clip_bounds_from_constant_nodes():
    model = graph_model([constant("lo", np.float32(0)), helper.make_node("Clip", ["x", "lo"], ["y"], name="node")],
                        {"x": [1, 8, 4, 5]}, opset=13)
    assert layer_of(model).flops == 160


@pytest.mark.parametrize("op_type,opset", [("ReduceSum", 13), ("ReduceMean", 18), ("ReduceMax", 18)])
def test_reduce_with_empty_axes_and_noop_is_identity(op_type, opset):
    model = single_op_model(op_type, {"x": [1, 8, 4, 5]}, opset=opset, noop_with_empty_axes=1)
    layer = layer_of(model)
    assert (layer.flops, layer.status) == (0, "zero_by_convention")
    reduced = layer_of(single_op_model(op_type, {"x": [1, 8, 4, 5]}, {"axes": np.array([-1], np.int64)},
                                       opset=opset, noop_with_empty_axes=1))
    assert (reduced.flops, reduced.status) == (160, "counted")


@pytest.mark.parametrize("op_type,opset,axes_input", [("ReduceMean", 17, False), ("ReduceMean", 18, True),
                                                      ("ReduceSum", 13, True)])
def test_reduce_axis_out_of_range_is_an_input_error(op_type, opset, axes_input):
    weights = {"axes": np.array([-5], np.int64)} if axes_input else {}
    model = single_op_model(op_type, {"x": [1, 8, 4, 5]}, weights, opset=opset,
                            **({} if axes_input else {"axes": [-5]}))
    with pytest.raises(InputError, match=rf"node 'node' \({op_type}\) axes = -5 is out of range for a rank-4"):
        analyze(load_model(model))


def test_argmax_negative_axis_is_the_channel_axis_and_out_of_range_is_refused():
    layer = layer_of(single_op_model("ArgMax", {"x": [1, 21, 8, 8]}, axis=-3, keepdims=1))
    assert layer.output_shape == [1, 1, 8, 8] and layer.flops == 21 * 64
    model = single_op_model("ArgMax", {"x": [1, 21, 8, 8]}, axis=-5, keepdims=1)
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.INT64, [1, 1, 8, 8]))
    with pytest.raises(InputError, match=r"attribute axis = -5 is out of range"):
        analyze(load_model(model))


@pytest.mark.parametrize("opset,op_type,names,weights,attrs", [
    (7, "Upsample", ["x"], {}, {"scales": [1.0, 1.0, 2.0, 2.0]}),
    (9, "Upsample", ["x", "s"], {"s": np.array([1, 1, 2, 2], np.float32)}, {}),
    (10, "Resize", ["x", "s"], {"s": np.array([1, 1, 2, 2], np.float32)}, {}),
    (11, "Resize", ["x", "roi", "s", "sz"], {"roi": np.array([], np.float32), "s": np.array([], np.float32),
                                             "sz": np.array([1, 4, 16, 16], np.int64)}, {}),
    (13, "Resize", ["x", "", "", "sz"], {"sz": np.array([1, 4, 16, 16], np.int64)}, {}),
    (18, "Resize", ["x", "", "s"], {"s": np.array([2, 2], np.float32)}, {"axes": [2, 3]}),
])
def test_resize_and_upsample_forms(opset, op_type, names, weights, attrs):
    mode = "linear" if opset >= 10 else "bilinear" if opset == 9 else "linear"
    model = single_op_model(op_type, {"x": [1, 4, 8, 8]}, weights, inputs=names, opset=opset, mode=mode, **attrs)
    layer = layer_of(model)
    assert layer.output_shape == [1, 4, 16, 16]
    assert layer.flops == 7 * 4 * 256


def test_resize_output_shape_from_constant_node_sizes_when_inference_has_none():
    """Sizes come from a Constant via Concat-free path; the rule computes the shape from the operand itself."""
    model = graph_model([constant("sz", np.array([1, 4, 12, 20], np.int64)),
                         helper.make_node("Resize", ["x", "", "", "sz"], ["y"], name="node", mode="linear")],
                        {"x": [1, 4, 6, 10]}, opset=13)
    graph = load_model(model)
    graph.tensors["y"].shape = None  # as after a failed inference
    layer = next(layer for layer in analyze(graph).layers if layer.name == "node")
    assert layer.output_shape == [1, 4, 12, 20] and layer.flops == 7 * 4 * 240


# -- Einsum ------------------------------------------------------------------------------------------
def einsum_layer(equation: str, *shapes):
    names = [f"i{index}" for index in range(len(shapes))]
    return layer_of(single_op_model("Einsum", dict(zip(names, shapes)), opset=12, equation=equation))


def test_einsum_maskformer_mask_head():
    layer = einsum_layer("bqc,bchw->bqhw", [1, 100, 256], [1, 256, 96, 96])
    assert layer.macs == 235_929_600
    assert layer.output_shape == [1, 100, 96, 96] and layer.flops == 2 * layer.macs


@pytest.mark.parametrize("equation,shapes,macs,output_shape", [
    ("ij,jk->ik", [[3, 4], [4, 5]], 3 * 4 * 5, [3, 5]),
    ("ij,jk", [[3, 4], [4, 5]], 3 * 4 * 5, [3, 5]),                        # implicit output: i, k
    ("...ij,...jk->...ik", [[2, 1, 3, 4], [6, 4, 5]], 2 * 6 * 3 * 4 * 5, [2, 6, 3, 5]),  # broadcast ellipsis
    ("bij,bjk", [[1, 3, 4], [7, 4, 5]], 7 * 3 * 4 * 5, [3, 5]),            # b summed away, broadcast 1→7
    ("ii,ij->j", [[4, 4], [4, 6]], 4 * 6, [6]),                            # diagonal of the first operand
    ("i,j->ij", [[3], [5]], 15, [3, 5]),                                   # outer product
    ("ij,jk,kl->il", [[2, 3], [3, 4], [4, 5]], 2 * 3 * 4 + 2 * 4 * 5, [2, 5]),  # pairwise from the left
    ("b h w c, c k -> b h w k", [[1, 8, 8, 16], [16, 4]], 64 * 16 * 4, [1, 8, 8, 4]),
])
def test_einsum_contractions(equation, shapes, macs, output_shape):
    layer = einsum_layer(equation, *shapes)
    assert (layer.macs, layer.output_shape) == (macs, output_shape)


@pytest.mark.parametrize("equation,shape,flops,output_shape", [
    ("ij->ji", [3, 4], 0, [4, 3]), ("ii->i", [5, 5], 0, [5]), ("ii", [5, 5], 5, []),
    ("bchw->bc", [2, 3, 4, 4], 96, [2, 3]),
])
def test_einsum_single_operand_is_movement_or_a_sum(equation, shape, flops, output_shape):
    layer = einsum_layer(equation, shape)
    assert (layer.macs, layer.flops, layer.output_shape, layer.status) == (0, flops, output_shape, "counted")


@pytest.mark.parametrize("equation,shapes,message", [
    ("ij,jk->ik", [[3, 4], [5, 6]], "subscript 'j' is 4 in one place and 5"),
    ("ijk,jk->ik", [[3, 4], [4, 5]], "has 3 subscripts for an input of rank 2"),
    ("ij,jk->iz", [[3, 4], [4, 5]], "output subscript 'z' is in no input"),
    ("i1,jk->ik", [[3, 4], [4, 5]], "'1' is not a subscript letter"),
])
def test_einsum_bad_equation_is_an_input_error(equation, shapes, message):
    names = [f"i{index}" for index in range(len(shapes))]
    model = single_op_model("Einsum", dict(zip(names, shapes)), opset=12, equation=equation)
    graph = load_model(model)
    with pytest.raises(InputError, match=message):
        analyze(graph)


def test_einsum_matches_torch_flop_counter():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    for equation, shapes in [("bqc,bchw->bqhw", [[1, 10, 16], [1, 16, 6, 6]]),
                             ("...ij,...jk->...ik", [[2, 3, 4], [2, 4, 5]]),
                             ("bhqd,bhkd->bhqk", [[2, 4, 7, 8], [2, 4, 9, 8]])]:
        with FlopCounterMode(display=False) as counter:
            torch.einsum(equation, *(torch.randn(shape) for shape in shapes))
        assert einsum_layer(equation, *shapes).flops == counter.get_total_flops(), equation


# -- attention --------------------------------------------------------------------------------------
def torch_sdpa_flops(q_shape, k_shape, v_shape, gqa=False) -> int:
    torch = pytest.importorskip("torch")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        torch.nn.functional.scaled_dot_product_attention(
            torch.randn(q_shape), torch.randn(k_shape), torch.randn(v_shape), enable_gqa=gqa)
    return counter.get_total_flops()


def test_onnx_attention_4d_grouped_heads_with_past():
    # Q (B=2, 8 heads, S=5, H=16), K/V 2 heads, 3 new + 4 past keys, H_v = 12
    model = single_op_model("Attention", {"q": [2, 8, 5, 16], "k": [2, 2, 3, 16], "v": [2, 2, 3, 12], "mask": [5, 7],
                                          "pk": [2, 2, 4, 16], "pv": [2, 2, 4, 12]}, opset=23)
    layer = layer_of(model)
    scores = 2 * 8 * 5 * 7
    assert layer.macs == scores * (16 + 12)
    assert 2 * layer.macs == torch_sdpa_flops([2, 8, 5, 16], [2, 2, 7, 16], [2, 2, 7, 12], gqa=True)
    assert layer.flops == 2 * layer.macs + scores * (5 + 1)  # scale + softmax, + the mask


def test_onnx_attention_3d_with_head_counts():
    model = single_op_model("Attention", {"q": [1, 6, 64], "k": [1, 9, 32], "v": [1, 9, 32]}, opset=23,
                            q_num_heads=4, kv_num_heads=2)
    layer = layer_of(model)
    assert layer.macs == 4 * 6 * 9 * (16 + 16)
    assert 2 * layer.macs == torch_sdpa_flops([1, 4, 6, 16], [1, 2, 9, 16], [1, 2, 9, 16], gqa=True)


def test_microsoft_attention_counts_the_qkv_projection():
    torch = pytest.importorskip("torch")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = single_op_model("Attention", {"x": [2, 10, 32]}, {"w": weight(32, 3 * 24), "b": weight(3 * 24)},
                            domain="com.microsoft", num_heads=4)
    layer = layer_of(model)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # the same computation in torch
        q, k, v = torch.nn.functional.linear(torch.randn(2, 10, 32), torch.randn(72, 32)).split(24, dim=-1)
        heads = [t.reshape(2, 10, 4, 6).transpose(1, 2) for t in (q, k, v)]
        torch.nn.functional.scaled_dot_product_attention(*heads)
    assert 2 * layer.macs == counter.get_total_flops()
    assert layer.macs == 2 * 10 * 32 * 72 + 2 * 10 * 10 * (24 + 24)
    assert layer.params == 32 * 72 + 72
    assert layer.flops == 2 * layer.macs + 2 * 10 * 72 + 2 * 4 * 10 * 10 * 5


@pytest.mark.parametrize("inputs,keys,value_head", [
    ({"q": [2, 5, 32], "k": [2, 7, 32], "v": [2, 7, 32]}, 7, 8),                 # 3-D q/k/v
    ({"q": [2, 5, 4, 3, 8]}, 5, 8),                                                # packed QKV
    ({"q": [2, 5, 32], "k": [2, 7, 4, 2, 8]}, 7, 8),                               # packed KV
    ({"q": [2, 5, 32], "k": [2, 4, 7, 8], "v": [2, 4, 7, 8]}, 7, 8),               # per-head K/V
])
def test_microsoft_multi_head_attention_layouts(inputs, keys, value_head):
    """Layouts as onnxruntime 1.32 names them (its CPU kernel runs the 3-D form; packed ones are GPU-only)."""
    model = single_op_model("MultiHeadAttention", inputs, domain="com.microsoft", num_heads=4)
    layer = layer_of(model)
    assert layer.macs == 2 * 4 * 5 * keys * (8 + value_head)
    assert 2 * layer.macs == torch_sdpa_flops([2, 4, 5, 8], [2, 4, keys, 8], [2, 4, keys, value_head])


def test_microsoft_group_query_attention_total_sequence_length():
    # query (B=1, S=3, 8 heads × 16), 2 kv heads, past 5 → total 8
    inputs = {"q": [1, 3, 128], "k": [1, 3, 32], "v": [1, 3, 32], "pk": [1, 2, 5, 16], "pv": [1, 2, 5, 16],
              "seqlens": [1]}
    model = single_op_model("GroupQueryAttention", inputs, {"total": np.array(8, np.int32)},
                            inputs=["q", "k", "v", "pk", "pv", "seqlens", "total"], domain="com.microsoft",
                            num_heads=8, kv_num_heads=2)
    layer = layer_of(model)
    assert layer.macs == 2 * 8 * 3 * 8 * 16
    assert 2 * layer.macs == torch_sdpa_flops([1, 8, 3, 16], [1, 2, 8, 16], [1, 2, 8, 16], gqa=True)


# -- normalizations and GELU --------------------------------------------------------------------------
@pytest.mark.parametrize("op_type,inputs,weights,attrs,flops", [
    # E = 2·10·64 = 1280 elements, R = 20 rows of 64
    ("LayerNormalization", {"x": [2, 10, 64]}, {"g": weight(64)}, {}, 6 * 1280 + 4 * 20),
    ("LayerNormalization", {"x": [2, 10, 64]}, {"g": weight(64), "b": weight(64)}, {}, 7 * 1280 + 4 * 20),
    ("LayerNormalization", {"x": [2, 10, 64]}, {"g": weight(10, 64)}, {"axis": -2}, 6 * 1280 + 4 * 2),
    ("RMSNormalization", {"x": [2, 10, 64]}, {"g": weight(64)}, {}, 4 * 1280 + 3 * 20),
    # N=2, C=8, 4x4: E = 256; 4 groups → R = 8; InstanceNorm R = 16
    ("GroupNormalization", {"x": [2, 8, 4, 4]}, {"g": weight(8), "b": weight(8)}, {"num_groups": 4}, 7 * 256 + 4 * 8),
    ("InstanceNormalization", {"x": [2, 8, 4, 4]}, {"g": weight(8), "b": weight(8)}, {}, 7 * 256 + 4 * 16),
    ("MeanVarianceNormalization", {"x": [2, 8, 4, 4]}, {}, {}, 5 * 256 + 3 * 8),
    ("LpNormalization", {"x": [2, 8, 4, 4]}, {}, {"axis": 1}, 3 * 256 + 32),
    ("Gelu", {"x": [2, 8, 4, 4]}, {}, {}, 5 * 256),
    ("Gelu", {"x": [2, 8, 4, 4]}, {}, {"approximate": "tanh"}, 9 * 256),
])
def test_normalization_and_gelu_flops(op_type, inputs, weights, attrs, flops):
    opset = 23 if op_type == "RMSNormalization" else 21
    layer = layer_of(single_op_model(op_type, inputs, weights, opset=opset, **attrs))
    assert (layer.macs, layer.flops) == (0, flops)


@pytest.mark.parametrize("op_type,inputs,weights,flops", [
    ("SkipLayerNormalization", {"x": [2, 10, 64], "s": [2, 10, 64]}, {"g": weight(64), "b": weight(64)},
     (1 + 7) * 1280 + 4 * 20),
    ("FastGelu", {"x": [2, 10, 64]}, {"b": weight(64)}, 10 * 1280),
    ("BiasGelu", {"x": [2, 10, 64]}, {"b": weight(64)}, 6 * 1280),
    ("Gelu", {"x": [2, 10, 64]}, {}, 5 * 1280),
])
def test_microsoft_norm_and_gelu_flops(op_type, inputs, weights, flops):
    layer = layer_of(single_op_model(op_type, inputs, weights, domain="com.microsoft",
                                     y_shape=[2, 10, 64]))
    assert (layer.macs, layer.flops, layer.status) == (0, flops, "counted")


def test_layer_norm_rows_by_hand_against_torch_decomposition():
    """LayerNorm written out op by op in torch: 5 element-ops for the statistics, 4 per row, ·γ, +β."""
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 10, 64)
    mean = x.sum(-1, keepdim=True) / 64                  # E adds, R divides
    centered = x - mean                                  # E
    var = (centered * centered).sum(-1, keepdim=True) / 64  # E + E, R
    y = centered * torch.rsqrt(var + 1e-5)               # E, R + R
    y = y * torch.randn(64) + torch.randn(64)            # E + E
    elements, rows = y.numel(), y.numel() // 64
    hand = 5 * elements + 4 * rows + 2 * elements
    layer = layer_of(single_op_model("LayerNormalization", {"x": [2, 10, 64]}, {"g": weight(64), "b": weight(64)},
                                     opset=17))
    assert layer.flops == hand


def test_ops_documents_einsum_attention_and_norms(run_cli):
    code, out, _ = run_cli("ops")
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0
    for name, formula in [("Einsum", "MACs = prod(sizes of all distinct letters)"), ("Attention", "MACs = B·N_q·S·T"),
                          ("com.microsoft::Attention", "QKV projection"),
                          ("com.microsoft::MultiHeadAttention", "MACs = B·S·T·(D + D_v)"),
                          ("com.microsoft::GroupQueryAttention", "MACs = 2·B·N·S·T·H"),
                          ("LayerNormalization", "flops = 6·E + 4·R"), ("RMSNormalization", "flops = 4·E + 3·R"),
                          ("GroupNormalization", "flops = 7·E + 4·R"), ("Gelu", "flops = 5 per element")]:
        assert formula in lines[name], (name, lines.get(name))


@pytest.mark.slow
@pytest.mark.torch
def test_fused_bert_attention_equals_its_unfused_matmuls(tmp_path):
    """onnxruntime's transformer optimizer fuses a BERT layer into com.microsoft Attention (+ SkipLayerNorm,
    BiasGelu); the fused graph must count exactly the MACs of the unfused MatMuls (1,114,112 here)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    from onnxruntime.transformers.optimizer import optimize_model

    from segcost.ir.onnx_io import from_model

    config = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64, attn_implementation="eager")
    bert = transformers.BertModel(config).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, ids, mask, types):
            return self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    ids = torch.randint(0, 100, (1, 16))
    path = tmp_path / "bert.onnx"
    torch.onnx.export(Encoder(), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path), opset_version=17,
                      input_names=["ids", "mask", "types"], output_names=["out"], dynamo=False)
    fused_path = tmp_path / "fused.onnx"
    optimize_model(str(path), model_type="bert", num_heads=4, hidden_size=64, opt_level=0).save_model_to_file(
        str(fused_path))
    fused_model = onnx.load(fused_path)
    assert sum(node.op_type == "Attention" for node in fused_model.graph.node) == 2
    # onnx shape inference does not know contrib ops; onnxruntime's symbolic inference does
    fused = analyze(from_model(SymbolicShapeInference.infer_shapes(fused_model, auto_merge=True)))
    plain = analyze(load_model(onnx.load(path)))
    per_layer = 3 * 16 * 64 * 64 + 2 * 4 * 16 * 16 * 16 + 16 * 64 * 64 + 2 * 16 * 64 * 128
    assert plain.totals.macs == fused.totals.macs == 2 * per_layer == 1_114_112
    assert not fused.coverage.unsupported


@pytest.mark.parametrize("equation,shapes", [
    ("...ij,...jk->...ik", [[2, 1, 3, 4], [6, 4, 5]]), ("...ij,...jk", [[5, 3, 4], [4, 2]]),
    ("i...,i...->...", [[3, 2, 5], [3, 1, 5]]), ("bn...,bn...->bn...", [[2, 3, 4, 5], [2, 3, 4, 5]]),
    ("ij,ij->ij", [[3, 4], [1, 4]]), ("ba,ab", [[3, 4], [4, 3]]), ("iij,jk->ik", [[2, 2, 3], [3, 4]]),
    ("...", [[2, 3]]), ("a...a->...", [[3, 4, 3]]), ("abc,cd,de->abe", [[2, 3, 4], [4, 5], [5, 6]]),
])
def test_einsum_output_shape_matches_numpy(equation, shapes):
    from segcost.analyzer.rules.einsum import einsum_cost

    arrays = [np.ones(shape, np.float32) for shape in shapes]
    _, _, output_shape = einsum_cost(equation, [tuple(shape) for shape in shapes])
    assert output_shape == np.einsum(equation, *arrays).shape
