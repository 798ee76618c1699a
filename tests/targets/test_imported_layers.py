"""A fused pattern TI imports as one layer is priced as one layer (segcost.targets.imported_layers).

breaker11 R4: the opset-13 LayerNorm sequence cost 7 layers (7 per-layer overheads) on tda4vm while TI's
import makes one TIDL_LayerNormLayer of it (docs/tidl_fsg_vtfr.md "Layernorm"); the opset-17 single op was
one layer. The γ Mul and β Add are eltwise layers in both forms ("expressed outside TIDL's layernorm block
as eltwise layers", same document).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.passes.verify_conv import load_rules
from segcost.pipeline import estimate_on_target
from segcost.targets.cost_model import prepare
from tests.passes.helpers import load

C, H, W = 64, 16, 16


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _model(middle: list, opset: int, inits: list):
    """Conv(3->C) -> to NHWC -> `middle` (x_t -> n) -> to NCHW -> Conv(C->8)."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c1"], ["x_t"], name="to_nhwc", perm=[0, 2, 3, 1]), *middle,
             helper.make_node("Transpose", ["n"], ["n_t"], name="to_nchw", perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["n_t", "w2"], ["y"], name="conv2")]
    inits = [_const("w1", np.ones((C, 3, 3, 3))), _const("w2", np.ones((8, C, 1, 1))), *inits]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, H, W])],
                              [helper.make_empty_tensor_value_info("y")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _layernorm(opset: int):
    affine = [_const("g", np.full(C, 2.0)), _const("b", np.full(C, 0.5))]
    if opset >= 17:
        return _model([helper.make_node("LayerNormalization", ["x_t", "g", "b"], ["n"], name="ln", axis=-1)],
                      opset, affine)
    nodes = [helper.make_node("ReduceMean", ["x_t"], ["mean"], name="mean", axes=[-1]),
             helper.make_node("Sub", ["x_t", "mean"], ["d"], name="sub"),
             helper.make_node("Pow", ["d", "two"], ["sq"], name="pow"),
             helper.make_node("ReduceMean", ["sq"], ["var"], name="var", axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
             helper.make_node("Sqrt", ["ve"], ["std"], name="sqrt"),
             helper.make_node("Div", ["d", "std"], ["z"], name="div"),
             helper.make_node("Mul", ["z", "g"], ["zg"], name="gamma"),
             helper.make_node("Add", ["zg", "b"], ["n"], name="beta")]
    return _model(nodes, opset, [*affine, _const("two", 2.0), _const("eps", 1e-5)])


def _gelu():
    """0.5·x · (1 + erf(x/√2)) with the 0.5 on x's side (a trailing Mul by 0.5 is a layer of its own: the matcher)."""
    nodes = [helper.make_node("Div", ["x_t", "sqrt2"], ["s"], name="scale"),
             helper.make_node("Erf", ["s"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["e1"], name="plus_one"),
             helper.make_node("Mul", ["x_t", "half"], ["xh"], name="half"),
             helper.make_node("Mul", ["xh", "e1"], ["n"], name="times_x")]
    return _model(nodes, 13, [_const("sqrt2", math.sqrt(2.0)), _const("one", 1.0), _const("half", 0.5)])


def _cost(model, target="tda4vm"):
    return estimate_on_target(load(model), target, fuse=False)


def test_layernorm_sequence_and_single_op_cost_the_same_three_layers():
    sequence, single = _cost(_layernorm(13)), _cost(_layernorm(17))
    rows = {layer.name: layer for layer in sequence.layers}
    assert "mean (layernorm-width, 7 nodes)" in rows
    assert not {"mean", "sub", "pow", "var", "add_eps", "sqrt", "div"} & set(rows)
    assert rows["mean (layernorm-width, 7 nodes)"].op_type == "LayerNormalization"
    assert rows["mean (layernorm-width, 7 nodes)"].placement == "accelerator"
    assert rows["mean (layernorm-width, 7 nodes)"].overhead_cycles == rows["gamma"].overhead_cycles   # one layer's
    # TI: γ and β are eltwise layers outside the layernorm block, in both forms.
    assert [(layer.name, layer.op_type) for layer in single.layers if layer.name.startswith("ln")] == [
        ("ln", "LayerNormalization"), ("ln (scale, eltwise)", "Mul"), ("ln (bias, eltwise)", "Add")]
    assert rows["gamma"].ms == pytest.approx({layer.name: layer for layer in single.layers}["ln (scale, eltwise)"].ms)
    # Stated tolerance 1%: what remains is the per-row statistics flops (the LayerNormalization rule's 4·R
    # against the sequence's Add + Sqrt, 2·R); the old pricing of the 7 nodes as 7 layers was 6 overheads more.
    assert sequence.totals.latency_ms == pytest.approx(single.totals.latency_ms, rel=0.01)
    assert sequence.totals.macs == single.totals.macs


def test_the_group_reads_its_outside_inputs_once_and_writes_only_what_leaves_it():
    prepared = prepare(load(_layernorm(13)), "current")
    item = next(item for item in prepared.features if item.layer.name.startswith("mean ("))
    assert item.input_tensors == ("x_t",)                      # read by ReduceMean and Sub: once
    assert item.layer.outputs == ["z"]                          # d, sq, var ... never reach memory
    assert item.input_elements == item.output_elements == C * H * W
    assert prepared.producers["z"] == item.layer.name and "d" not in prepared.producers


def test_gelu_erf_sequence_is_one_layer_and_the_totals_stay_exact():
    model = _gelu()
    graph = load(model)
    report = _cost(model)
    names = [layer.name for layer in report.layers]
    assert "scale (gelu-erf, 5 nodes)" in names
    assert not {"scale", "erf", "plus_one", "times_x", "half"} & set(names)
    analysis = analyze(load(model))
    assert report.totals.macs == analysis.totals.macs
    prepared = prepare(graph, "current")
    assert sum(item.layer.flops for item in prepared.features) == analysis.totals.flops
    assert sum(item.layer.params for item in prepared.features) == analysis.totals.params


@pytest.mark.parametrize("rules", [None, "tidl-09.02"])
def test_layernorm_sequence_stays_op_by_op_where_no_importer_fuses_it(rules):
    """cpu (no rule set) runs the nodes as separate kernels; a rule set fuses them iff it lists layernorm-width."""
    prepared = prepare(load(_layernorm(13)), rules)
    names = {item.layer.name for item in prepared.features}
    fused = rules is not None and "layernorm-width" in load_rules(rules).fused_patterns
    assert ("div" in names) != fused
    assert _cost(_layernorm(13), "cpu").layers[0].name == "conv1"
    assert "div" in {layer.name for layer in _cost(_layernorm(13), "cpu").layers}


def test_gelu_in_torchs_form_ends_in_the_mul_by_half():
    """torch writes x · (1 + erf(x/√2)) · 0.5; TI's GELU picture (tidl_fsg_vtfr.md) ends in that Mul by 0.5."""
    nodes = [helper.make_node("Div", ["x_t", "sqrt2"], ["s"], name="scale"),
             helper.make_node("Erf", ["s"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["e1"], name="plus_one"),
             helper.make_node("Mul", ["x_t", "e1"], ["xe"], name="times_x"),
             helper.make_node("Mul", ["xe", "half"], ["n"], name="half")]
    model = _model(nodes, 13, [_const("sqrt2", math.sqrt(2.0)), _const("one", 1.0), _const("half", 0.5)])
    names = {layer.name for layer in _cost(model).layers}
    assert "scale (gelu-erf, 5 nodes)" in names and "half" not in names


def test_the_single_op_splits_only_where_tidl_runs_it_and_keeps_its_totals():
    model = _layernorm(17)
    analysis = analyze(load(model))
    split = prepare(load(model), "current")
    assert [item.layer.name for item in split.features if item.layer.name.startswith("ln")] == [
        "ln", "ln (scale, eltwise)", "ln (bias, eltwise)"]
    assert sum(item.layer.flops for item in split.features) == analysis.totals.flops
    assert sum(item.layer.params for item in split.features) == analysis.totals.params
    assert split.features[3].input_tensors == ("ln/normalized",) and split.elements["ln/normalized"] == C * H * W
    for rules in (None, "tidl-09.02"):     # cpu; SDK 9.2 lists no LayerNormalization: it runs on ARM, one kernel
        assert "ln (scale, eltwise)" not in {item.layer.name for item in prepare(load(model), rules).features}


@pytest.mark.parametrize("opset", [13, 17])
def test_to_pandas_gives_imported_rows_to_the_layers_they_price(pandas_records, opset):
    """The target's rows for a fused sequence ("mean (layernorm-width, 7 nodes)") and a LayerNormalization's γ/β
    ("ln (scale, eltwise)") are joined to the analysis layers they price, so target_ms sums to the layers' time."""
    import segcost

    result = segcost.analyze(_layernorm(opset), target="tda4vm")
    assert result.to_pandas() == "frame"
    rows = {row["name"]: row for row in pandas_records["rows"]}
    layer_ms = sum(estimate.ms for estimate in result.target.layers)
    assert sum(row["target_ms"] or 0.0 for row in rows.values()) == pytest.approx(layer_ms, rel=1e-12)
    first = "mean" if opset == 13 else "ln"
    parts = [estimate.ms for estimate in result.target.layers if estimate.name.startswith(first)]
    assert len(parts) == (1 if opset == 13 else 3) and rows[first]["target_ms"] == pytest.approx(sum(parts))
