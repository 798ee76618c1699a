"""Hand-computed MACs/FLOPs for every cost rule (closed-form integers, exact equality)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from segcost.errors import ShapeError
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
