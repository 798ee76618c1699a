"""PassManager bookkeeping and error context; activation fusion marks."""

from __future__ import annotations

import numpy as np
import pytest

from segcost.analyzer import count_macs
from segcost.errors import SegcostError
from segcost.ir import Node
from segcost.passes import (
    FuseConvActivationPass,
    FuseConvBatchNormPass,
    PassBase,
    PassError,
    PassManager,
    PassResult,
    PostconditionError,
)
from segcost.samples import deeplabv3lite
from segcost.samples.builder import GraphBuilder
from tests.passes.helpers import load


class BreakGraphPass(PassBase):
    name = "break-graph"

    def call(self, graph):
        graph.add_node(Node("bad", "Relu", inputs=["nowhere"], outputs=["bad_out"]))
        return PassResult(graph, True)


class NewGraphPass(PassBase):
    name = "new-graph"

    def call(self, graph):
        return PassResult(load(deeplabv3lite(width=0.35, num_classes=2, height=32, width_px=32)), True)


def _small():
    return load(deeplabv3lite(width=0.35, num_classes=3, height=32, width_px=32))


def test_records_fixed_point_and_idempotence():
    graph = _small()
    manager = PassManager([FuseConvBatchNormPass(), FuseConvActivationPass()], fixed_point=True, metric=count_macs)
    result = manager(graph)
    assert result.modified
    assert [(r.name, r.iteration, r.modified) for r in result.records] == [
        ("fuse-conv-bn", 1, True), ("fuse-conv-activation", 1, True),
        ("fuse-conv-bn", 2, False), ("fuse-conv-activation", 2, False)]
    first = result.records[0]
    assert first.nodes_after < first.nodes_before and first.macs_after == first.macs_before > 0
    again = manager(result.graph)
    assert not again.modified and all(not record.modified for record in again.records)


def test_without_a_metric_nothing_is_measured():
    calls = []
    result = PassManager([FuseConvBatchNormPass()], metric=None)(_small())
    assert result.records[0].macs_before == result.records[0].macs_after == 0
    PassManager([FuseConvBatchNormPass()], metric=lambda graph: calls.append(len(graph)) or 7)(_small())
    assert len(calls) == 2   # before, and after the modifying pass


def test_verifier_runs_after_each_pass_with_context():
    with pytest.raises(PostconditionError, match=r"while running 'break-graph' after \['fuse-conv-bn'\]"):
        PassManager([FuseConvBatchNormPass(), BreakGraphPass()])(_small())


def test_in_place_contract_is_enforced():
    with pytest.raises(PassError, match="declared in place"):
        NewGraphPass()(_small())


def test_error_types_are_segcost_errors():
    assert issubclass(PassError, SegcostError)


def test_activation_marks_relu_and_relu6_only():
    builder = GraphBuilder()
    y = builder.conv_bn("input", 3, 8, 3, name="a")                       # Relu
    y = builder.conv_bn(y, 8, 8, 3, name="b", activation="Relu6")         # Clip(0, 6)
    y = builder.conv_bn(y, 8, 8, 3, name="c", activation=None)
    y = builder.node("Sigmoid", [y], "sigmoid")
    graph = load(builder.model("input", (1, 3, 8, 8), y, (1, 8, 8, 8)))
    FuseConvBatchNormPass()(graph)
    result = FuseConvActivationPass()(graph)
    assert result.modified
    marked = {key: graph.node(key).meta.get("fused_activation") for key in graph.dag
              if graph.node(key).op_type == "Conv"}
    assert marked == {"a": "a.relu", "b": "b.relu6", "c": None}
    assert graph.node("a.relu").meta["fused_into"] == "a"
    assert not FuseConvActivationPass()(graph).modified


def test_clip_with_other_bounds_is_not_fused():
    builder = GraphBuilder()
    y = builder.conv("input", 3, 4, 1, name="conv")
    y = builder.node("Clip", [y, builder.constant("lo", np.float32(-1)), builder.constant("hi", np.float32(1))],
                     "clip")
    graph = load(builder.model("input", (1, 3, 4, 4), y, (1, 4, 4, 4)))
    assert not FuseConvActivationPass()(graph).modified
