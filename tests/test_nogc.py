"""Loading and analyzing a graph runs no cyclic garbage collection (segcost.nogc), and leaves the GC as found."""

from __future__ import annotations

import gc

import onnx
import pytest

from segcost.analyzer import analyze
from segcost.errors import InputError
from segcost.frontends.onnx import load
from segcost.nogc import nogc
from segcost.samples.scale import deep


@pytest.fixture
def collections():
    """The generations of every cyclic collection that starts while the test runs."""
    started: list[int] = []

    def record(phase, info):
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(record)
    try:
        yield started
    finally:
        gc.callbacks.remove(record)


def test_load_and_analyze_run_no_collection(tmp_path, collections):
    path = tmp_path / "deep.onnx"
    onnx.save_model(deep(3000), path)
    collections.clear()
    graph = load(path)
    result = analyze(graph)
    assert collections == []   # the old code ran hundreds (tens of thousands of nodes, dicts, lists)
    assert gc.isenabled()
    assert result.totals.nodes == len(graph)


def test_the_gc_state_is_restored_on_error_and_when_nested(tmp_path):
    bad = tmp_path / "empty.onnx"
    bad.write_bytes(b"")
    with pytest.raises(InputError):
        load(bad)
    assert gc.isenabled()

    inner = nogc(lambda: gc.isenabled())
    assert nogc(lambda: (inner(), gc.isenabled()))() == (False, False)
    assert gc.isenabled()
    gc.disable()
    try:
        assert inner() is False
        assert not gc.isenabled()   # a caller's own choice is kept
    finally:
        gc.enable()
