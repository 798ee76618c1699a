"""The JSON report's fast path (one reused encoder, layers written in chunks) gives json.dumps' exact text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.reports.analysis import _LAYERS_PER_CHUNK, _compact_encoder, render_json_chunks
from segcost.samples.scale import deep

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(values)
def test_the_reused_encoder_writes_what_json_dumps_writes(value):
    assert _compact_encoder()(value) == json.dumps(value, allow_nan=False)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1, {"a": float("-inf")}]])
def test_the_reused_encoder_refuses_nan_and_infinity(value):
    with pytest.raises(ValueError):
        _compact_encoder()(value)


@pytest.mark.parametrize("nodes", [3, _LAYERS_PER_CHUNK - 1, _LAYERS_PER_CHUNK + 2, 2 * _LAYERS_PER_CHUNK + 1])
def test_chunked_layers_read_back_as_to_dict_one_per_line(nodes):
    result = analyze(load_model(deep(nodes)))  # a multiple of 3 nodes: chunks full, partial, one over
    text = "".join(render_json_chunks(result))
    assert json.loads(text) == json.loads(json.dumps(result.to_dict()))
    lines = text.split('"layers": [\n', 1)[1].split("\n  ]", 1)[0].split("\n")
    assert len(lines) == len(result.layers) == nodes
    assert [json.loads(line.strip().rstrip(",")) for line in lines] == [vars(layer) for layer in result.layers]


def test_chunks_of_a_lazy_table_equal_the_objects_rows_whatever_the_names():
    """Layers written a chunk at a time (one %-formatting per chunk) read as the objects' rows, for names
    holding %-directives, quotes, backslashes and non-ASCII, in every chunk."""
    model = deep(_LAYERS_PER_CHUNK + 5)
    odd = ['50% "off"', "%s%%d", "back\\slash", "naïve-π", "%(name)s"]
    renamed = {}
    for index, node in enumerate(model.graph.node):
        node.name = f"{odd[index % len(odd)]} {index}"
        if index % 7 == 3:   # an activation tensor renamed where it is produced and read
            renamed[node.output[0]] = f"{odd[index % len(odd)]}/t{index}"
            node.output[0] = renamed[node.output[0]]
    for node in model.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    for output in model.graph.output:
        output.name = renamed.get(output.name, output.name)
    result = analyze(load_model(model))
    lazy = "".join(render_json_chunks(result))
    assert not result.layers.materialized
    result.layers = list(result.layers)   # the objects: each row from vars(layer)
    assert "".join(render_json_chunks(result)) == lazy
    assert json.loads(lazy) == json.loads(json.dumps(result.to_dict()))
