"""Which layer a weight counts at: through forwarders (Identity, DequantizeLinear, ...), in subgraphs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model


def _model(nodes, initializers, x_shape=(1, 4, 8, 8), y_shape=None, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        initializer=[numpy_helper.from_array(array, name) for name, array in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _layers(model: onnx.ModelProto):
    result = analyze(load_model(model))
    return result, {layer.name: layer for layer in result.layers}


W = np.ones((8, 4, 3, 3), np.float32)
B = np.ones((8,), np.float32)


def test_bias_through_identity_counts_at_the_conv():
    """smp exports: onnx::Conv_455 -> Identity -> Conv; the Conv holds the bias as a weight."""
    model = _model([helper.make_node("Identity", ["b0"], ["b1"], name="id"),
                    helper.make_node("Identity", ["b1"], ["b"], name="id2"),
                    helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])],
                   {"w": W, "b0": B})
    result, layers = _layers(model)
    assert layers["id"].params == layers["id2"].params == 0
    assert layers["id"].activation_bytes == layers["id2"].activation_bytes == 0
    assert layers["conv"].params == W.size + B.size
    assert layers["conv"].weight_bytes == 4 * (W.size + B.size)
    assert layers["conv"].activation_bytes == 4 * (4 * 8 * 8 + 8 * 8 * 8)   # x and y only
    assert result.totals.params == W.size + B.size


def test_dequantized_weight_counts_at_the_conv_without_scales():
    """QDQ: the int8 weight is the Conv's param (1 byte each); scales and zero points are no params."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="dqx"),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], name="dqw", axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv")]
    model = _model(nodes, {"wq": W.astype(np.int8), "sw": np.ones(8, np.float32), "zw": np.zeros(8, np.int8),
                           "sx": np.float32(0.1), "zx": np.int8(0)})
    result, layers = _layers(model)
    assert layers["dqw"].params == layers["qx"].params == layers["dqx"].params == 0
    assert layers["conv"].params == W.size and layers["conv"].weight_bytes == W.size
    assert result.totals.params == W.size


def test_forwarder_to_a_graph_output_keeps_its_weight():
    """A constant that only reaches a graph output through Identity still counts (float totals unchanged)."""
    model = _model([helper.make_node("Identity", ["b0"], ["y"], name="id")], {"b0": B}, y_shape=[8])
    result, layers = _layers(model)
    assert layers["id"].params == B.size and result.totals.params == B.size


def test_reshaped_weight_counts_at_the_conv_without_its_shape_tensor():
    """Reshape of a constant forwards: the weight counts at the consumer; its int64 shape tensor is no
    param (analyzer.weights.is_weight; it counted before, +4)."""
    shape = np.array([8, 4, 3, 3], np.int64)
    model = _model([helper.make_node("Reshape", ["w0", "s"], ["w"], name="reshape"),
                    helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                   {"w0": W.reshape(8, 36), "s": shape})
    result, layers = _layers(model)
    assert layers["reshape"].params == 0
    assert layers["conv"].params == W.size and result.totals.params == W.size
    assert layers["conv"].weight_bytes == 4 * W.size


def _loop_model(trips: int) -> onnx.ModelProto:
    """Loop of `trips` trips whose body convolves its carried x with a weight stored in the body."""
    body = helper.make_graph(
        [helper.make_node("Conv", ["x_in", "wb"], ["x_out"], pads=[1, 1, 1, 1]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1, 4, 8, 8])],
        initializer=[numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "wb")])
    loop = helper.make_node("Loop", ["m", "", "x"], ["y"], name="loop", body=body)
    return _model([loop], {"m": np.array(trips, np.int64)}, y_shape=[1, 4, 8, 8])


def test_loop_body_weights_count_their_bytes():
    """R13: a body weight's params came with 0 weight bytes; both count once, whatever the trips."""
    result, layers = _layers(_loop_model(3))
    assert layers["loop"].params == 4 * 4 * 9                       # the body weight; M (int64 count) is no param
    assert layers["loop"].weight_bytes == 4 * 4 * 9 * 4
    assert result.totals.weight_bytes == 4 * 4 * 9 * 4
    assert result.control_flow[0].weight_bytes == 4 * 4 * 9 * 4


def test_if_branch_weights_count_their_bytes():
    def branch(name: str, value: float):
        return helper.make_graph(
            [helper.make_node("Conv", ["x", f"w_{name}"], [f"y_{name}"], pads=[1, 1, 1, 1])], name, [],
            [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, [1, 4, 8, 8])],
            initializer=[numpy_helper.from_array(np.full((4, 4, 3, 3), value, np.float32), f"w_{name}")])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch("then", 1), else_branch=branch("else", 2))],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
              helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    _, layers = _layers(model)
    assert layers["if"].params == 2 * 4 * 4 * 9
    assert layers["if"].weight_bytes == 2 * 4 * 4 * 9 * 4


def test_loop_trip_count_from_a_shape_chain():
    """R2: M = Shape(x)[2] (16 once x is static) was one trip in analyze, 16 in cost (which folds first)."""
    model = _loop_model(1)
    graph_proto = model.graph
    del graph_proto.initializer[:]   # M is now computed: Shape(x)[2] = 8
    graph_proto.node.insert(0, helper.make_node("Gather", ["sh", "two"], ["m"], name="gather", axis=0))
    graph_proto.node.insert(0, helper.make_node("Shape", ["x"], ["sh"], name="shape"))
    graph_proto.initializer.append(numpy_helper.from_array(np.array(2, np.int64), "two"))
    result, layers = _layers(model)
    body_macs = 8 * 8 * 4 * 4 * 9
    assert result.control_flow[0].trip_count == 8 and not result.control_flow[0].unbounded
    assert layers["loop"].macs == 8 * body_macs and result.totals.macs == 8 * body_macs


def test_a_shape_chain_trip_count_is_evaluated_by_the_loaders_evaluator(monkeypatch):
    """Shape -> Gather is computed by shapes.values (numpy, exact as onnxruntime), as the loader's chains are;
    onnx.reference is only the fallback for ops it refuses."""
    import onnx.reference

    def refuse(*args, **kwargs):
        raise AssertionError("onnx.reference used for a Shape -> Gather trip count")

    monkeypatch.setattr(onnx.reference, "ReferenceEvaluator", refuse)
    model = _loop_model(1)
    del model.graph.initializer[:]
    model.graph.node.insert(0, helper.make_node("Gather", ["sh", "two"], ["m"], name="gather", axis=0))
    model.graph.node.insert(0, helper.make_node("Shape", ["x"], ["sh"], name="shape"))
    model.graph.initializer.append(numpy_helper.from_array(np.array(2, np.int64), "two"))
    result, _ = _layers(model)
    assert result.control_flow[0].trip_count == 8


def test_forwarder_nobody_reads_keeps_its_weight():
    """A dead Identity of a constant still counts it (float totals unchanged by forwarding)."""
    model = _model([helper.make_node("Identity", ["b0"], ["unused"], name="id"),
                    helper.make_node("Relu", ["x"], ["y"], name="relu")], {"b0": B}, y_shape=[1, 4, 8, 8])
    result, layers = _layers(model)
    assert layers["id"].params == B.size and layers["id"].weight_bytes == 4 * B.size
    assert result.totals.params == B.size


def test_qlinearconv_scales_and_zero_points_are_no_params():
    """QOperator int8: QLinearConv's params are its int8 weight and int32 bias, not its 6 scales/zero points."""
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 8, 6, 6])
    names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"]
    arrays = {"xs": np.float32(0.1), "xz": np.uint8(0), "w": W.astype(np.int8), "ws": np.ones(8, np.float32),
              "wz": np.zeros(8, np.int8), "ys": np.float32(0.2), "yz": np.uint8(0), "b": B.astype(np.int32)}
    graph = helper.make_graph([helper.make_node("QLinearConv", names, ["y"], name="conv")], "g", [x], [y],
                              initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    _, layers = _layers(model)
    assert layers["conv"].params == W.size + B.size
    assert layers["conv"].weight_bytes == W.size + 4 * B.size
