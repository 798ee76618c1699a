"""params are weights: float constants read as data and quantized weights, never shapes, indices or axes.

DESIGN "params": elements of initializers consumed by the layer (weights, bias, BN statistics). An
int64 Reshape target, Gather indices or a relative-position index table (HF BEiT's ScatterND data) is
none of those; torch's sum(p.numel()) counts none of them (breaker11 F1).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load, load_model


def _model(nodes, initializers, x_shape=(1, 4, 8, 8), y_shape=None, y_type=TensorProto.FLOAT, opset=21,
           x_type=TensorProto.FLOAT) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", x_type, list(x_shape))],
        [helper.make_tensor_value_info("y", y_type, y_shape)],
        initializer=[value if isinstance(value, onnx.TensorProto) else numpy_helper.from_array(np.asarray(value), name)
                     for name, value in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _layers(model: onnx.ModelProto):
    result = analyze(load_model(model))
    return result, {layer.name: layer for layer in result.layers}


def test_a_constant_reshape_target_is_no_param():
    model = _model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
                   {"shape": np.array([1, 4, 64], np.int64)})
    result, layers = _layers(model)
    assert layers["reshape"].params == layers["reshape"].weight_bytes == 0
    assert result.totals.params == result.totals.weight_bytes == 0


def test_constant_gather_indices_on_a_computed_tensor_are_no_params():
    model = _model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                    helper.make_node("Gather", ["r", "idx"], ["y"], name="gather", axis=1)],
                   {"idx": np.array([[0, 2], [1, 3], [3, 0]], np.int64)})
    result, layers = _layers(model)
    assert layers["gather"].params == 0 and result.totals.params == result.totals.weight_bytes == 0


def test_an_index_table_scattered_and_expanded_is_no_param():
    """HF BEiT: ScatterND into an int64 table, Expand of int64 indices: +70k 'params' before."""
    table = np.zeros((16, 16), np.int64)
    model = _model([helper.make_node("ScatterND", ["table", "where", "updates"], ["t"], name="scatter"),
                    helper.make_node("Expand", ["t", "shape"], ["e"], name="expand"),
                    helper.make_node("Reshape", ["e", "flat"], ["f"], name="flat"),
                    helper.make_node("Gather", ["bias_table", "f"], ["g"], name="lookup", axis=0),
                    helper.make_node("Reshape", ["g", "back"], ["b"], name="back"),
                    helper.make_node("Add", ["x", "b"], ["y"], name="add")],
                   {"table": table, "where": np.array([[0, 0], [1, 1]], np.int64),
                    "updates": np.array([[5] * 16, [7] * 16], np.int64), "shape": np.array([2, 16, 16], np.int64),
                    "flat": np.array([-1], np.int64), "bias_table": np.ones((20,), np.float32),
                    "back": np.array([1, 2, 16, 16], np.int64)},
                   x_shape=(1, 2, 16, 16))
    result, layers = _layers(model)
    assert {name: layer.params for name, layer in layers.items() if layer.params} == {"lookup": 20}
    assert result.totals.params == 20 and result.totals.weight_bytes == 4 * 20


def test_operator_settings_of_float_type_are_no_params():
    """Clip's bounds, Resize's scales, Pad's fill value configure the op; a float read as data is a weight, once."""
    model = _model([helper.make_node("Clip", ["x", "zero", "six"], ["c"], name="relu6"),
                    helper.make_node("Resize", ["c", "", "scales"], ["r"], name="up", mode="nearest"),
                    helper.make_node("Pad", ["r", "pads", "fill"], ["p"], name="pad"),
                    helper.make_node("Mul", ["p", "six"], ["y"], name="scale")],
                   {"zero": np.float32(0), "six": np.float32(6), "scales": np.array([1, 1, 2, 2], np.float32),
                    "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "fill": np.float32(0)})
    result, layers = _layers(model)
    assert [layers[name].params for name in ("relu6", "up", "pad", "scale")] == [0, 0, 0, 1]
    assert result.totals.params == 1 and result.totals.weight_bytes == 4


W = np.arange(8 * 4 * 3 * 3).reshape(8, 4, 3, 3) % 7 - 3


def _qdq_conv(weight: onnx.TensorProto, zero: onnx.TensorProto, through_transpose: bool = False) -> onnx.ModelProto:
    """QuantizeLinear/DequantizeLinear x; DequantizeLinear of a stored weight (per channel) and int32 bias; Conv."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="dqx"),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], name="dqw", axis=0),
             helper.make_node("DequantizeLinear", ["bq", "sb"], ["bd"], name="dqb", axis=0),
             helper.make_node("Conv", ["xd", "wd", "bd"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    if through_transpose:   # the weight stored [4, 8, 3, 3] and transposed after dequantizing
        nodes[2:3] = [helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wt"], name="dqw", axis=1),
                      helper.make_node("Transpose", ["wt"], ["wd"], name="tw", perm=[1, 0, 2, 3])]
    return _model(nodes, {"wq": weight, "sw": np.full(8, 0.1, np.float32), "zw": zero,
                          "bq": np.arange(8, dtype=np.int32), "sb": np.full(8, 0.01, np.float32),
                          "sx": np.float32(0.1), "zx": np.int8(0)})


@pytest.mark.parametrize("through_transpose", [False, True])
def test_an_int8_qdq_conv_has_its_weight_and_bias_as_params(through_transpose):
    stored = W.transpose(1, 0, 2, 3) if through_transpose else W
    model = _qdq_conv(numpy_helper.from_array(stored.astype(np.int8), "wq"),
                      numpy_helper.from_array(np.zeros(8, np.int8), "zw"), through_transpose)
    result, layers = _layers(model)
    assert layers["conv"].params == W.size + 8
    assert layers["conv"].weight_bytes == W.size + 4 * 8    # int8 weight, int32 bias
    assert result.totals.params == W.size + 8 and result.totals.weight_bytes == W.size + 4 * 8


@pytest.mark.parametrize("dtype, offset", [(TensorProto.INT4, 0), (TensorProto.UINT4, 8)])
def test_an_int4_qdq_weight_counts_packed(dtype, offset):
    weight = helper.make_tensor("wq", dtype, list(W.shape), (W.flatten() + offset).tolist())
    zero = helper.make_tensor("zw", dtype, [8], [offset] * 8)
    result, layers = _layers(_qdq_conv(weight, zero))
    assert layers["conv"].params == W.size + 8
    assert layers["conv"].weight_bytes == W.size // 2 + 4 * 8   # 288 int4 elements in 144 bytes


def test_integer_weights_of_integer_ops_are_params():
    """MatMulInteger's constant B and ConvInteger's w are quantized weights; their zero points are not."""
    b = np.ones((8, 3), np.int8)
    w = np.ones((2, 4, 1, 1), np.uint8)
    model = _model([helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["c"], name="conv"),
                    helper.make_node("Cast", ["c"], ["cq"], name="cast", to=TensorProto.UINT8),
                    helper.make_node("Reshape", ["cq", "shape"], ["m"], name="flat"),
                    helper.make_node("MatMulInteger", ["m", "b"], ["y"], name="matmul")],
                   {"w": w, "xz": np.uint8(0), "wz": np.uint8(0), "shape": np.array([1, 4, 8], np.int64), "b": b},
                   x_shape=(1, 4, 4, 4), x_type=TensorProto.UINT8, y_type=TensorProto.INT32)
    result, layers = _layers(model)
    assert (layers["conv"].params, layers["flat"].params, layers["matmul"].params) == (w.size, 0, b.size)
    assert result.totals.params == w.size + b.size


def test_a_constant_read_as_an_index_first_and_as_a_weight_later_counts_at_the_weight():
    model = _model([helper.make_node("Gather", ["x", "k"], ["g"], name="gather", axis=1),
                    helper.make_node("Cast", ["k"], ["kf"], name="cast", to=TensorProto.FLOAT),
                    helper.make_node("Mul", ["g", "kf"], ["y"], name="mul")],
                   {"k": np.array([1, 2], np.int64)}, x_shape=(1, 4, 2))
    result, layers = _layers(model)
    # the int64 values, cast to float and multiplied with, are read as data at the Mul
    assert (layers["gather"].params, layers["cast"].params, layers["mul"].params) == (0, 0, 2)


@pytest.mark.torch
def test_legacy_and_dynamo_exports_have_torchs_params(tmp_path, capsys):
    """One module, exported three ways: params equal each other and sum(p.numel()) (no BN buffers).
    The exports differ in int64 constants (legacy: Reshape targets, Gather indices, Resize scales
    as Constant nodes; dynamo: its own shape vectors): none of them are params."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.proj = nn.Linear(8, 6)
            self.head = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = nn.functional.interpolate(torch.relu(self.conv(x)), scale_factor=2.0, mode="nearest")
            tokens = self.proj(y.flatten(2).transpose(1, 2))                  # [1, 2HW, 6]
            picked = tokens[:, :, [0, 2, 4]]                                   # constant int64 indices
            return self.head(picked.transpose(1, 2).reshape(1, 3, 2 * x.shape[2], 2 * x.shape[3]))

    model, example = Net().eval(), torch.zeros(1, 3, 8, 12)
    expected = sum(parameter.numel() for parameter in model.parameters())
    paths = {name: tmp_path / f"{name}.onnx" for name in ("legacy13", "legacy17", "dynamo")}
    with torch.no_grad():
        for name, opset in (("legacy13", 13), ("legacy17", 17)):
            torch.onnx.export(model, (example,), str(paths[name]), dynamo=False, opset_version=opset)
        torch.onnx.export(model, (example,), str(paths["dynamo"]), dynamo=True, external_data=False)
    capsys.readouterr()   # the exporters' progress lines
    params = {name: analyze(load(path)).totals.params for name, path in paths.items()}
    assert params == dict.fromkeys(paths, expected)


def test_matmulnbits_holds_its_packed_weight_and_bias_not_its_scales_zero_points_or_g_idx():
    """com.microsoft MatMulNBits (ContribOperators.md): B (uint8 blocks) and bias are params; scales, zero_points
    are quantization parameters; g_idx (int32) is an index."""
    blocks = np.ones((8, 1, 8), np.uint8)   # N=8, one block of 16 4-bit values
    node = helper.make_node("MatMulNBits", ["x", "b", "scales", "zeros", "g_idx", "bias"], ["y"], name="mm",
                            domain="com.microsoft", K=16, N=8, bits=4, block_size=16)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(value, name) for name, value in {
            "b": blocks, "scales": np.ones(8, np.float32), "zeros": np.full(8, 8, np.uint8),
            "g_idx": np.zeros(16, np.int32), "bias": np.zeros(8, np.float32)}.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    _, layers = _layers(model)
    assert layers["mm"].params == blocks.size + 8 and layers["mm"].weight_bytes == blocks.size + 4 * 8
