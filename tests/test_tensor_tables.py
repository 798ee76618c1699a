"""analyzer.tables.tensor_tables: the walk's shape look-up is graph.shape (but for ""), with or without kinds."""

from __future__ import annotations

import numpy as np
import pytest

from segcost.analyzer.tables import tensor_tables
from segcost.ir import Graph, Initializer, TensorInfo

F = 1  # float32


def _graph(overlap: bool) -> Graph:
    graph = Graph()
    graph.initializers["w"] = Initializer("w", F, (2, 3), array=np.zeros((2, 3), np.float32))
    graph.initializers["v"] = Initializer("v", F, (4,), array=np.zeros(4, np.float32))
    graph.tensors.update({"x": TensorInfo("x", F, (1, 2)), "y": TensorInfo("y", F, None),
                          "s": TensorInfo("s", F, ("n", 2)), "": TensorInfo("", F, (5,))})
    if overlap:   # a tensor that is an initializer too: its recorded shape wins, and kinds are off
        graph.tensors["w"] = TensorInfo("w", F, (3, 2))
        graph.tensors["v"] = TensorInfo("v", F, None)
    return graph


@pytest.mark.parametrize("overlap", [False, True])
def test_shape_of_is_graph_shape_with_or_without_kinds(overlap):
    graph = _graph(overlap)
    names = ["x", "y", "s", "w", "v", "", "missing"]
    expected = {name: graph.shape(name) if name else None for name in names}   # "": an omitted input, no shape
    for kinds in (False, True):
        shape_of, sizes, kind = tensor_tables(graph, kinds)
        assert {name: shape_of(name) for name in names} == expected
        assert bool(kind) == (kinds and not overlap)
        assert sizes["x"] == 8 and sizes["s"] == 0 and sizes["missing"] == 0
