"""Small graphs for pass tests, built with onnx.helper / the sample builder."""

from __future__ import annotations

import numpy as np
import onnx

from segcost.frontends.onnx import load_model
from segcost.ir.feeds import random_feeds
from segcost.ir.onnx_io import to_model
from segcost.pipeline import run_onnxruntime


def outputs_of(model: onnx.ModelProto, graph) -> list[np.ndarray]:
    return run_onnxruntime(model, random_feeds(model, graph, seed=3))


def assert_same_outputs(before: onnx.ModelProto, graph_before, after_graph, rtol: float = 1e-5,
                        atol: float = 1e-5) -> None:
    """onnxruntime outputs of the original model and the rewritten IR agree (relative to output scale)."""
    after = to_model(after_graph)
    onnx.checker.check_model(after)
    expected = outputs_of(before, graph_before)
    actual = run_onnxruntime(after, random_feeds(before, graph_before, seed=3))
    for want, got in zip(expected, actual):
        assert want.shape == got.shape
        assert np.abs(want - got).max() <= atol + rtol * np.abs(want).max()


def load(model: onnx.ModelProto):
    return load_model(model)


def op_types(graph) -> list[str]:
    return [graph.node(key).op_type for key in graph.topological_order()]
