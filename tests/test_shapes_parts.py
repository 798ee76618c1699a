"""segcost.shapes.open_part: chain rounds re-infer only the open part of the model, with the
whole model's result (issue 19)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import segcost.shapes.infer as shapes_infer
from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from tests.test_shapes import CONV1_MACS, chain_model

F = TensorProto.FLOAT
MATMUL_MACS = 8 * 256 * 4


def two_level_model(with_if: bool = False, with_custom: bool = False) -> onnx.ModelProto:
    """chain_model's Reshape to r = 1x8x8x32, then r reshaped by Shape(r)[0:2] + [-1] to 1x8x256 → MatMul.

    The second target is not constant before r has a shape, but onnx's data propagation
    computes it from Shape(r) in the same run that gives r its shape, if that run sees the
    Shape → Slice → Concat nodes (their outputs are already static 1-D tensors).
    """
    model = chain_model()
    graph = model.graph
    del graph.output[:]
    graph.node.extend([
        helper.make_node("Shape", ["r"], ["rs"], name="shape_r"),
        helper.make_node("Slice", ["rs", "s0", "s2"], ["rs2"], name="slice_r"),
        helper.make_node("Concat", ["rs2", "minus_one"], ["target2"], axis=0, name="concat2"),
        helper.make_node("Reshape", ["r", "target2"], ["r2"], name="reshape2"),
        helper.make_node("MatMul", ["r2", "w3"], ["out"], name="matmul"),
    ])
    graph.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), "s0"),
                              numpy_helper.from_array(np.array([2], np.int64), "s2"),
                              numpy_helper.from_array(np.ones((256, 4), np.float32), "w3")])
    graph.output.extend([helper.make_tensor_value_info("z", F, None), helper.make_tensor_value_info("out", F, None)])
    if with_if:   # a subgraph anywhere: the rounds infer the whole model
        branch = helper.make_graph([helper.make_node("Identity", ["out"], ["then_out"])], "then", [],
                                   [helper.make_tensor_value_info("then_out", F, None)])
        graph.node.append(helper.make_node("If", ["cond"], ["picked"], then_branch=branch, else_branch=branch))
        # a run-time condition: the If stays in the inference copy (a constant one is replaced by its branch)
        graph.input.append(helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, []))
        graph.output.append(helper.make_tensor_value_info("picked", F, None))
    if with_custom:   # a type error beside the chain: strict inference fails, every run is non-strict
        graph.node.append(helper.make_node("Add", ["y", "s0"], ["bad"], name="bad_add"))
        graph.output.append(helper.make_tensor_value_info("bad", F, None))
    return model


@pytest.fixture
def runs(monkeypatch) -> list[list[str]]:
    """The op types of the nodes of every model onnx shape inference runs on with value propagation.

    (Each such run follows a run without it, which bounds what propagation may hold:
    shapes.propagation; tests/test_shapes_propagation.py counts those.)
    """
    counts: list[list[str]] = []
    infer = onnx.shape_inference.infer_shapes

    def spy(model, *args, **kwargs):
        if kwargs.get("data_prop"):
            counts.append([node.op_type for node in model.graph.node])
        return infer(model, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", spy)
    return counts


def _whole_rounds(monkeypatch) -> None:
    resolve = shapes_infer.resolve_value_chains
    monkeypatch.setattr(shapes_infer, "resolve_value_chains", lambda *args, **kwargs: resolve(
        *args, **(kwargs | {"parts": False})))


def test_later_rounds_infer_only_the_open_part(runs):
    """Before, each round and the end re-inferred the whole model."""
    model = two_level_model()
    graph = load_model(model)
    assert graph.shape("r2") == (1, 8, 256) and graph.shape("out") == (1, 8, 4)
    assert analyze(graph).totals.macs == CONV1_MACS + 8 * 8 * 9 * 8 * 32 + MATMUL_MACS
    assert len(runs[0]) == len(model.graph.node)
    assert len(runs) == 2 and len(runs[1]) < len(runs[0]) // 2   # one round, no final whole run
    assert runs[1].count("Conv") == 1 and "MatMul" not in runs[1]   # conv2 reads r; out was static already


def test_the_part_sees_the_data_propagation_it_needs(runs, monkeypatch):
    """Shape(r) → Slice → Concat are static already but feed the open Reshape: in the part, so
    the round closes r2 as the whole model's run does (same number of runs)."""
    load_model(two_level_model())
    with_parts = list(runs)
    runs.clear()
    _whole_rounds(monkeypatch)
    load_model(two_level_model())
    assert len(with_parts) == len(runs)


@pytest.mark.parametrize(("with_if", "with_custom"), [(False, False), (True, False), (False, True)])
def test_part_shapes_equal_whole_model_shapes(with_if, with_custom, monkeypatch):
    graph = load_model(two_level_model(with_if, with_custom))
    _whole_rounds(monkeypatch)
    whole = load_model(two_level_model(with_if, with_custom))
    assert list(graph.tensors.items()) == list(whole.tensors.items())
    assert graph.info.metadata_props == whole.info.metadata_props
    assert ("segcost.shape_inference" in graph.info.metadata_props) == with_custom


def test_a_model_with_a_subgraph_is_inferred_whole_each_round(runs):
    graph = load_model(two_level_model(with_if=True))
    assert graph.shape("picked") == (1, 8, 4)
    assert len(runs) == 2 and all("If" in ops and "Conv" in ops for ops in runs)
