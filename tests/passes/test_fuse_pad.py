"""FusePadPass: a zero constant Pad folds into the Conv/AveragePool after it exactly where onnxruntime folds it.

Each case is checked three ways: the expected verdict written here, onnxruntime 1.32's own
level-1 optimized graph (the oracle: `optimized_model_filepath` at ORT_ENABLE_BASIC, where
PadFusion runs), and — for the folds — onnxruntime outputs of the old and new graph on the
same input (both run with its optimizations off) and the MAC count.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import count_macs
from segcost.passes import PASSES, FusePadPass
from segcost.pipeline import DEFAULT_PIPELINE, optimize_model, target_pipeline
from tests.passes.helpers import assert_same_outputs, load, op_types


def padded(opset: int = 17, pads=(0, 0, 1, 1, 0, 0, 1, 1), value=0.0, mode: str = "constant",
           consumer: str = "Conv", consumer_attrs: dict | None = None, second_reader: bool = False,
           pad_output_is_output: bool = False, value_input: bool = True, axes=None, cast: bool = False,
           overridable: str | None = None) -> onnx.ModelProto:
    """x[1,4,8,8] → Pad(pads, value, mode) (→ Cast) → CONSUMER(3x3) → y; options make each refusal case."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    if opset >= 11:
        inputs = ["x", "pads"]
        inits.append(numpy_helper.from_array(np.array(pads, np.int64), "pads"))
        if value_input:
            inits.append(numpy_helper.from_array(np.array(value, np.float32), "value"))
            inputs.append("value")
        if axes is not None:
            inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
            inputs += [""] * (3 - len(inputs)) + ["axes"]
        nodes.append(helper.make_node("Pad", inputs, ["p"], name="pad", mode=mode))
    else:
        nodes.append(helper.make_node("Pad", ["x"], ["p"], name="pad", mode=mode, pads=list(pads), value=value))
    source = "p"
    if cast:
        nodes.append(helper.make_node("Cast", ["p"], ["pc"], name="cast", to=TensorProto.FLOAT))
        source = "pc"
    attrs = {"pads": [0, 0, 0, 0], **(consumer_attrs or {})}
    attrs = {name: value for name, value in attrs.items() if value is not None}
    if consumer == "Conv":
        channels = 4 + (pads[1] + pads[len(pads) // 2 + 1] if axes is None else 0)   # a channel-axis Pad widens it
        inits.append(numpy_helper.from_array(rng.standard_normal((4, channels, 3, 3)).astype(np.float32), "w"))
        nodes.append(helper.make_node("Conv", [source, "w"], ["y"], name="conv", kernel_shape=[3, 3], **attrs))
    else:
        nodes.append(helper.make_node(consumer, [source], ["y"], name="pool", kernel_shape=[3, 3], **attrs))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if second_reader:
        nodes.append(helper.make_node("Relu", ["p"], ["z"], name="relu"))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    if pad_output_is_output:
        outputs.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, None))
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])]
    if overridable:
        init = next(init for init in inits if init.name == overridable)
        graph_inputs.append(helper.make_tensor_value_info(overridable, init.data_type, list(init.dims)))
    model = helper.make_model(helper.make_graph(nodes, "g", graph_inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 21 else 10
    return model


# name → (model options, folds, the consumer's pads after the fold)
CASES = {
    "conv": (dict(), True, [1, 1, 1, 1]),
    "asymmetric": (dict(pads=(0, 0, 0, 1, 0, 0, 2, 0)), True, [0, 1, 2, 0]),
    "added to the conv's own pads": (dict(consumer_attrs={"pads": [1, 0, 1, 0]}), True, [2, 1, 2, 1]),
    "conv without pads attribute": (dict(consumer_attrs={"pads": None}), True, [1, 1, 1, 1]),
    "no constant value input": (dict(value_input=False), True, [1, 1, 1, 1]),
    "opset 10 attribute form": (dict(opset=10), True, [1, 1, 1, 1]),
    "opset 21": (dict(opset=21), True, [1, 1, 1, 1]),
    "through a Cast": (dict(cast=True), True, [1, 1, 1, 1]),
    "average pool": (dict(consumer="AveragePool"), True, [1, 1, 1, 1]),
    "average pool counting its own pads": (dict(consumer="AveragePool", consumer_attrs={
        "pads": [1, 1, 1, 1], "count_include_pad": 1}), True, [2, 2, 2, 2]),
    "non-zero value": (dict(value=1.0), False, None),
    "negative zero value": (dict(value=-0.0), False, None),
    "reflect mode": (dict(mode="reflect"), False, None),
    "edge mode": (dict(mode="edge"), False, None),
    "channel axis": (dict(pads=(0, 1, 1, 1, 0, 0, 1, 1)), False, None),
    "batch axis": (dict(pads=(1, 0, 1, 1, 0, 0, 1, 1)), False, None),
    "negative pad": (dict(pads=(0, 0, 1, -1, 0, 0, 1, 1)), False, None),
    "two readers": (dict(second_reader=True), False, None),
    "pad output is a graph output": (dict(pad_output_is_output=True), False, None),
    "axes input": (dict(opset=18, pads=(1, 1, 1, 1), axes=[2, 3]), False, None),
    "max pool": (dict(consumer="MaxPool"), False, None),
    "average pool not counting its own pads": (dict(consumer="AveragePool", consumer_attrs={"pads": [1, 1, 1, 1]}),
                                               False, None),
    "auto_pad": (dict(consumer_attrs={"pads": None, "auto_pad": "SAME_UPPER"}), False, None),
    "overridable pads": (dict(overridable="pads"), False, None),
    "overridable value": (dict(overridable="value"), False, None),
}


def onnxruntime_folds(model: onnx.ModelProto, tmp_path) -> tuple[bool, list[int] | None]:
    """(whether onnxruntime's level-1 optimizers remove the Pad, the consumer's pads afterwards)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "basic.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "basic.onnx"))
    consumer = next(node for node in optimized.graph.node if node.op_type in ("Conv", "AveragePool", "MaxPool"))
    pads = next((list(attribute.ints) for attribute in consumer.attribute if attribute.name == "pads"), None)
    return all(node.op_type != "Pad" for node in optimized.graph.node), pads


@pytest.mark.parametrize("case", list(CASES))
def test_folds_exactly_where_onnxruntime_folds(case, tmp_path):
    options, folds, expected_pads = CASES[case]
    model = padded(**options)
    runtime_folds, runtime_pads = onnxruntime_folds(model, tmp_path)
    assert runtime_folds is folds, "onnxruntime's own PadFusion disagrees with this case's verdict"
    assert not folds or runtime_pads == expected_pads
    graph = load(model)
    macs = count_macs(graph)
    fuse = FusePadPass()
    result = fuse(graph)
    assert result.modified is folds
    assert ("Pad" not in op_types(result.graph)) is folds
    assert count_macs(result.graph) == macs
    if folds:
        consumer = next(result.graph.node(key) for key in result.graph.topological_order()
                        if result.graph.node(key).op_type in ("Conv", "AveragePool"))
        assert list(consumer.attrs["pads"]) == expected_pads
        assert consumer.meta["created_by"] == "fuse-pad"
        if consumer.op_type == "AveragePool":
            assert consumer.attrs["count_include_pad"] == 1
        assert_same_outputs(model, load(model), result.graph, rtol=1e-6, atol=1e-6)
    else:
        assert fuse.explanations and fuse.explanations[0][0] == "pad"
        assert any(note.startswith("not folded pad: ") for note in result.notes)


def test_average_pool_fold_counts_the_padding_numerically():
    """AveragePool(Pad(x)) divides by the whole window; after the fold only count_include_pad = 1 does that."""
    model = padded(consumer="AveragePool")
    result = FusePadPass()(load(model))
    assert_same_outputs(model, load(model), result.graph, rtol=1e-6, atol=1e-6)
    del result.graph.node("pool").attrs["count_include_pad"]
    with pytest.raises(AssertionError):
        assert_same_outputs(model, load(model), result.graph, rtol=1e-6, atol=1e-6)


def test_runs_for_cpu_only_and_not_in_optimize_by_default():
    """cpu: onnxruntime folds the Pad itself; tda4vm: TIDL maps Pad to its own layer; optimize: opt-in."""
    assert "fuse-pad" in PASSES and "fuse-pad" not in DEFAULT_PIPELINE
    assert "Pad" not in op_types(target_pipeline(load(padded()), "cpu"))
    assert "Pad" in op_types(target_pipeline(load(padded()), "tda4vm"))
    assert "Pad" in op_types(target_pipeline(load(padded())))
    assert "Pad" in op_types(optimize_model(load(padded())).graph)


def test_optimize_with_the_pass_checks_numerics_and_keeps_macs():
    result = optimize_model(load(padded(cast=True)), passes=[*DEFAULT_PIPELINE, "fuse-pad"])
    assert "Pad" not in op_types(result.graph)
    assert result.after.totals.macs == result.before.totals.macs > 0
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5
    assert any(record.name == "fuse-pad" and record.modified for record in result.records)
