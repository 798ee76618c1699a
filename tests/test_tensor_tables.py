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


@pytest.mark.parametrize("overlap", [False, True])
def test_sizes_are_found_when_read_and_equal_each_tensors_bytes(overlap):
    graph = _graph(overlap)
    graph.tensors["u"] = TensorInfo("u", 0, (3,))   # no dtype of its own, no initializer: 0 bytes
    graph.initializers["c"] = Initializer("c", 7, (2,), array=np.zeros(2, np.int64))
    graph.tensors["c"] = TensorInfo("c", 0, None)   # shape and dtype from its initializer
    for kinds in (False, True):
        sizes = tensor_tables(graph, kinds)[1]
        assert not sizes   # nothing computed before it is read (133k entries at 100k nodes)
        expected = {"x": 8, "y": 0, "s": 0, "": 0, "missing": 0, "u": 0, "c": 16,
                    "w": 24, "v": 16}
        assert {name: sizes[name] for name in expected} == expected
        sizes["x"] = 0   # set by the walk (a forwarded weight): kept
        assert sizes["x"] == 0
