"""A layer segcost keeps in float runs in float in onnxruntime (breaker8 R12).

Between int8 layers a float Conv is written `DequantizeLinear → Conv(float W) → QuantizeLinear`;
onnxruntime's WeightBiasQuantization transformer (graph optimization level "basic", on by
default) used to quantize its weights with one per-tensor scale at session creation, so
`--exclude-nodes` (and the float layers `--mixed` measures) made the model worse: after
cross-layer equalization the excluded Conv's rows span a wide range (smp FPN-MobileNetV4:
26.4 → 9.7 dB; the model below: 26.2 → 21.6 dB).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import segcost
from segcost.frontends.onnx import load_model
from segcost.quant.float_layers import pin_float_layers
from segcost.quant.mixed_cost import quantized_units
from segcost.quant.mixed_variants import SQNRRunner, float_variant
from segcost.targets.cost_model import prepare
from segcost.targets.runtime import float_conv

SHAPE = [1, 3, 32, 32]


def _model(qm, branch: bool = False) -> onnx.ModelProto:
    """c0 → Relu → c1 → Relu → c2 (depthwise 3×3) → Relu → c3. c1's first channel is nearly dead (bias −1), so
    equalization with the depthwise c2 (s_c = r_c / R) scales its row far up: per-tensor weights then lose
    the other rows. With `branch`, c0's output also feeds cb, added to c3's input (a shared DequantizeLinear)."""
    b = qm.Builder(seed=1)
    x = b.op("Relu", [b.conv("c0", "input", 3, 16)], "r0")
    y = b.op("Relu", [b.conv("c1", x, 16, 16)], "r1")
    bias = next(init for init in b.inits if init.name == "c1_b")
    values = numpy_helper.to_array(bias).copy()
    values[0] = -1.0
    bias.CopyFrom(numpy_helper.from_array(values.astype(np.float32), "c1_b"))
    b.const("c2_w", (b.rng.standard_normal((16, 1, 3, 3)) / 3).astype(np.float32))
    b.const("c2_b", np.zeros(16, np.float32))
    b.nodes.append(helper.make_node("Conv", [y, "c2_w", "c2_b"], ["c2"], name="c2", group=16, pads=[1] * 4))
    z = b.op("Relu", ["c2"], "r2")
    if branch:
        z = b.op("Add", [z, b.conv("cb", x, 16, 16)], "sum")
    b.conv("c3", z, 16, 8)
    return b.model({"input": SHAPE}, {"c3": [1, 8, 32, 32]})


def _as_onnxruntime_runs(model: onnx.ModelProto, tmp_path, level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
                         ) -> onnx.ModelProto:
    """The model after onnxruntime's graph optimizations up to `level` (basic: WeightBiasQuantization's; extended:
    its QDQ fusions into QLinearConv), as onnxruntime saves it."""
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return onnx.load(tmp_path / "optimized.onnx")


def _float_weight(model: onnx.ModelProto, layer: str) -> bool:
    """Whether `layer` reads its weight straight from a float initializer (no DequantizeLinear in between)."""
    node = next(node for node in model.graph.node if node.name == layer)
    weights = {init.name: init for init in model.graph.initializer}
    return node.input[1] in weights and weights[node.input[1]].data_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("branch", [False, True])
def test_an_excluded_layer_runs_in_float_in_onnxruntime_and_costs_no_accuracy(qm, tmp_path, branch):
    model = _model(qm, branch)
    full = segcost.quantize(model, calib_size=4)
    excluded = segcost.quantize(model, calib_size=4, exclude_nodes=["c1"])
    assert _float_weight(excluded.model, "c1")
    assert _float_weight(_as_onnxruntime_runs(excluded.model, tmp_path), "c1")   # not quantized at session start
    # a float layer instead of an int8 one: no loss (it was 4.6 dB; 16.7 dB on smp FPN-MobileNetV4)
    assert excluded.accuracy.outputs[0].sqnr_db >= full.accuracy.outputs[0].sqnr_db - 0.5
    assert any("c1" in note and "per-axis DequantizeLinear" in note for note in excluded.quantization.notes)
    # the int8 layers stay int8 (QLinearConv) and the pinned one is no quantized unit of the cost model
    extended = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert {node.name: node.op_type for node in _as_onnxruntime_runs(full.model, tmp_path, extended).graph.node
            }["c1"] == "QLinearConv"
    assert {node.name: node.op_type for node in _as_onnxruntime_runs(excluded.model, tmp_path, extended).graph.node
            }["c1"] != "QLinearConv"
    assert "c1" not in quantized_units(load_model(model), load_model(excluded.model))
    assert "c0" in quantized_units(load_model(model), load_model(excluded.model))
    prepared = prepare(load_model(excluded.model), None)
    floats = {item.layer.name for item in prepared.features if float_conv(item, prepared)}
    assert "c1" in floats and "c0" not in floats   # the cost model runs it as the float conv it is


def test_mixed_float_variants_are_float_in_onnxruntime(qm, tmp_path):
    """--mixed measures a layer in float on a variant of the full int8 model: the same structure, the same SQNR."""
    model = _model(qm)
    full = segcost.quantize(model, calib_size=4)
    live = {node.name for node in full.model.graph.node} - {"c1"}
    variant = float_variant(full.model, full.quantization.float_model, live)
    assert _float_weight(_as_onnxruntime_runs(variant, tmp_path), "c1")
    feeds = [sample.feeds for sample in full.quantization.source]
    runner = SQNRRunner(full.quantization.float_model, feeds)
    assert runner.sqnr(variant) >= runner.sqnr(full.model) - 0.5


def _qdq_model(channels: int, shared: bool, opset: int = 17, via: str = "") -> onnx.ModelProto:
    """x → Q → DQ → conv (float weight) → Relu → Q → DQ → y; with `shared`, the DQ also feeds an Add to y;
    `via` puts a Transpose between the DQ and the conv ("before") or a Reshape between the Relu and the Q
    ("after"): onnxruntime's QDQPropagationTransformer moves the DQ forward / the Q back across them."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.uint8(128), "z"),
             numpy_helper.from_array(rng.standard_normal((4, channels, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")]
    inits.append(numpy_helper.from_array(np.array([1, 4, 8, 8], np.int64), "shape"))
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq0")]
    if via == "before":
        nodes.append(helper.make_node("Transpose", ["xd"], ["xt"], name="transpose", perm=[0, 1, 3, 2]))
    nodes += [helper.make_node("Conv", ["xt" if via == "before" else "xd", "w", "b"], ["c"], name="conv",
                               pads=[1] * 4),
              helper.make_node("Relu", ["c"], ["r"], name="relu")]
    if via == "after":
        nodes.append(helper.make_node("Reshape", ["r", "shape"], ["rr"], name="reshape"))
    nodes += [helper.make_node("QuantizeLinear", ["rr" if via == "after" else "r", "s", "z"], ["rq"], name="q1"),
             helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y" if not shared else "rd"], name="dq1")]
    if shared:
        nodes.append(helper.make_node("ReduceMean", ["xd"], ["m"], name="mean", axes=[1], keepdims=1))
        nodes.append(helper.make_node("Add", ["rd", "m"], ["y"], name="add"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                         [1, channels, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def _run(model: onnx.ModelProto, x: np.ndarray, level) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize(("channels", "shared", "via"), [(3, False, ""), (3, True, ""), (1, False, ""),
                                                      (3, False, "before"), (3, False, "after")])
def test_pinning_changes_no_value_and_onnxruntime_leaves_the_layer_float(tmp_path, channels, shared, via):
    model = _qdq_model(channels, shared, via=via)
    x = np.random.default_rng(1).standard_normal([1, channels, 8, 8]).astype(np.float32)
    written = _run(model, x, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)   # the model as written: float conv
    assert not _float_weight(_as_onnxruntime_runs(model, tmp_path), "conv")   # what onnxruntime did with it
    assert np.abs(_run(model, x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL) - written).max() > 0
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    assert pin_float_layers(pinned) == (["conv"], [])
    onnx.checker.check_model(pinned, full_check=True)
    assert _float_weight(_as_onnxruntime_runs(pinned, tmp_path), "conv")
    np.testing.assert_array_equal(_run(pinned, x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL), written)
    assert len([node for node in pinned.graph.node if node.op_type == "DequantizeLinear"]) == 2 + shared
    again = onnx.ModelProto()
    again.CopyFrom(pinned)
    assert pin_float_layers(again) == ([], []) and again == pinned


def test_an_opset_12_layer_cannot_be_pinned_and_is_named():
    model = _qdq_model(3, False, opset=12)
    assert pin_float_layers(model) == ([], ["conv"])
