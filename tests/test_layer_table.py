"""The column-wise layer table (analyzer.layers) reads exactly as the LayerCost objects it makes.

An analysis keeps its layers in columns and shared LayerSignatures; the JSON report, the totals,
the subtotals and the conventions read those columns, and LayerCost objects are made only when a
caller asks for `result.layers[i]` or iterates. Every figure must be the same either way: these
tests compute each one from the lazy table and again from plain lists of the objects.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.analyzer.conventions import CATEGORIES, convention_totals
from segcost.analyzer.grouping import group_layers
from segcost.analyzer.layers import LayerCost, LayerSignature, LayerTable, make_layer
from segcost.fileio.writes import json_text
from segcost.frontends.onnx import load_model
from segcost.reports.analysis import (
    _compact_encoder,
    _row_template,
    groups_dict,
    render,
    render_indented_json_chunks,
    render_json_chunks,
)

# names a report must escape, and one that looks like the JSON renderer's own markers
ODD_NAMES = ['conv "quoted" %d', "ünïcode/%s", "\x000name", "tab\there", "back\\slash"]


def _corpus_like_model() -> onnx.ModelProto:
    """Repeated conv blocks (shared signatures), forwarded weights, reshapes, an omitted input, an unknown op."""
    rng = np.random.default_rng(0)
    nodes, initializers, current = [], [], "x"
    for block, name in enumerate(ODD_NAMES):
        weight = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{block}")
        bias = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), f"b{block}")
        initializers += [weight, bias]
        nodes += [helper.make_node("Identity", [bias.name], [f"bi{block}"], name=f"id{block}"),
                  helper.make_node("Conv", [current, weight.name, f"bi{block}"], [f"c{block}"], name=name,
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{block}"], [f"r{block}"], name=f"relu{block}"),
                  helper.make_node("Add", [current, f"r{block}"], [f"a{block}"], name=f"add{block}")]
        current = f"a{block}"
    shape = numpy_helper.from_array(np.array([1, 4, 64], np.int64), "flat")
    back = numpy_helper.from_array(np.array([1, 4, 8, 8], np.int64), "square")
    low = numpy_helper.from_array(np.array(0.0, np.float32), "low")
    initializers += [shape, back, low]
    nodes += [helper.make_node("Reshape", [current, "flat"], ["f1"], name="reshape1"),
              helper.make_node("Reshape", ["f1", "square"], ["s1"], name="reshape2"),
              helper.make_node("Reshape", ["s1", "flat"], ["f2"], name="reshape3"),
              helper.make_node("Reshape", ["f2", "square"], ["s2"], name="reshape4"),
              helper.make_node("Clip", ["s2", "", "low"], ["clipped"], name="clip"),   # omitted min
              helper.make_node("Mystery", ["clipped"], ["side"], name="custom", domain="my.ops"),
              helper.make_node("MaxPool", ["clipped"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4]),
                               helper.make_tensor_value_info("side", TensorProto.FLOAT, None)],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return _corpus_like_model()


def _as_lists(value):
    """Tuples (the lazy columns' immutable form) as lists, recursively."""
    if isinstance(value, (tuple, list)):
        return [_as_lists(item) for item in value]
    return value


def test_the_table_stays_lazy_through_totals_groups_and_json(model):
    result = analyze(load_model(model))
    table = result.layers
    assert isinstance(table, LayerTable) and not table.materialized
    assert len(table.signatures) < len(table)   # repeated blocks share signatures: the fast path is tested
    "".join(render_json_chunks(result))
    group_layers(table, "prefix", 1)
    convention_totals(result, list(CATEGORIES))
    assert not table.materialized


def test_lazy_json_rows_equal_the_objects_rows(model):
    result = analyze(load_model(model))
    lazy = "".join(render_json_chunks(result))
    result.layers = list(result.layers)   # the objects, as a plain list: rows come from vars(layer)
    assert "".join(render_json_chunks(result)) == lazy
    assert json.loads(lazy)["layers"] == [vars(layer) for layer in result.layers]


@pytest.mark.parametrize("fmt, options", [("csv", {}), ("table", {}), ("md", {}), ("table", {"top": 5}),
                                          ("table", {"group_by": "prefix:2"}), ("csv", {"group_by": "kind"})])
def test_lazy_text_reports_equal_the_objects_reports(model, fmt, options):
    result = analyze(load_model(model))
    lazy = render(result, fmt, **options)
    assert not result.layers.materialized
    result.layers = list(result.layers)
    assert render(result, fmt, **options) == lazy


@pytest.mark.parametrize("group_by", ["op_type", "prefix:2"])
def test_indented_json_is_json_text_of_the_whole_document(model, group_by):
    result = analyze(load_model(model))
    extra = {"groups": groups_dict(result, group_by)}
    lazy = "".join(render_indented_json_chunks(result, extra))
    assert not result.layers.materialized
    document = result.to_dict()   # the objects, as the --group-by report was written before
    document.update(extra)
    assert lazy == json_text(document)
    assert "".join(render_indented_json_chunks(result, extra)) == lazy   # now from the objects
    result.layers = []   # no layers: "layers": [] in place
    assert "".join(render_indented_json_chunks(result, extra)) == json_text({**result.to_dict(), **extra})


def test_lazy_columns_and_subtotals_equal_the_objects(model):
    lazy = analyze(load_model(model))
    layers = list(analyze(load_model(model)).layers)
    for field in LayerCost.__dataclass_fields__:
        assert _as_lists(lazy.layers.column(field)) == [getattr(layer, field) for layer in layers], field
    for key, depth in (("op_type", 1), ("kind", 1), ("prefix", 1), ("prefix", 2)):
        assert group_layers(lazy.layers, key, depth) == group_layers(layers, key, depth)
    plain = analyze(load_model(model))
    plain.layers = list(plain.layers)
    assert convention_totals(lazy, list(CATEGORIES)) == convention_totals(plain, list(CATEGORIES))
    assert not lazy.layers.materialized
    assert lazy.layers == layers and layers == lazy.layers


def test_materialized_layers_are_the_data(model):
    result = analyze(load_model(model))
    first = result.layers[0]
    assert result.layers.materialized and result.layers[0] is first
    first.params += 1   # a caller's change shows in every later reading
    assert result.layers.column("params")[0] == first.params
    row = "".join(render_json_chunks(result)).split('"layers": [\n', 1)[1].split("\n", 1)[0]
    assert json.loads(row.strip().rstrip(","))["params"] == first.params


def test_the_table_behaves_as_a_list(model):
    result = analyze(load_model(model))
    table, copy = result.layers, list(analyze(load_model(model)).layers)
    assert len(table) == len(copy) and table[1:3] == copy[1:3] and table[-1] == copy[-1]
    assert repr(table) == repr(copy)
    table.append(copy[0])
    table.sort(key=lambda layer: layer.name)
    assert [layer.name for layer in table] == sorted([layer.name for layer in copy] + [copy[0].name])
    del table[0]
    assert len(table) == len(copy)


# breaker7 R4: what library code did with the plain list `result.layers` was (as on main) must work on the table.
LIST_OPERATIONS = {
    "isinstance list": lambda layers: isinstance(layers, list),
    "asdict, then JSON": lambda layers: json.dumps(dataclasses.asdict(_Holder(layers))["layers"]),
    "asdict gives plain lists": lambda layers: type(dataclasses.asdict(_Holder(layers))["layers"]).__name__,
    "times 2": lambda layers: [layer.name for layer in layers * 2],
    "2 times": lambda layers: [layer.name for layer in 2 * layers],
    "plus a list": lambda layers: [layer.name for layer in layers + layers[:1]],
    "a list plus": lambda layers: [layer.name for layer in layers[:1] + layers],
    "in": lambda layers: layers[2] in layers,
    "index, count": lambda layers: (layers.index(layers[3]), layers.count(layers[3])),
    "pop": lambda layers: (layers.pop().name, len(layers)),
    "reverse": lambda layers: (layers.reverse(), layers[0].name),
    "bool, len": lambda layers: (bool(layers), len(layers)),
    "< another": lambda layers: layers[:2] < layers[:3],
    "sorted": lambda layers: [layer.name for layer in sorted(layers, key=lambda layer: layer.name)],
    "copy.copy does not alias": lambda layers: (_grow(copy.copy(layers), layers[0]), len(layers)),
    "copy() does not alias": lambda layers: (_grow(layers.copy(), layers[0]), len(layers)),
    "deepcopy does not alias": lambda layers: (_deep_grow(layers), layers[0].params),
    "pickle": lambda layers: pickle.loads(pickle.dumps(layers)) == layers,
    "+=": lambda layers: (_extend(layers), len(layers)),
}


@dataclasses.dataclass
class _Holder:
    layers: list


def _grow(layers, layer):
    layers.append(layer)
    return len(layers)


def _deep_grow(layers):
    deep = copy.deepcopy(layers)
    deep[0].params += 1
    return deep[0].params


def _extend(layers):
    layers += layers[:2]


@pytest.mark.parametrize("touched", [False, True], ids=["lazy", "materialized"])
@pytest.mark.parametrize("operation", sorted(LIST_OPERATIONS))
def test_the_table_does_what_the_list_did(model, operation, touched):
    table = analyze(load_model(model)).layers
    plain = list(analyze(load_model(model)).layers)   # main's result.layers: a plain list of LayerCost
    if touched:
        table[0]
    assert LIST_OPERATIONS[operation](table) == LIST_OPERATIONS[operation](plain)
    assert table == plain and len(table) == len(plain)


def test_a_copy_of_a_lazy_table_stays_lazy_and_apart(model):
    table = analyze(load_model(model)).layers
    copied = copy.copy(table)
    assert isinstance(copied, LayerTable) and not copied.materialized and not table.materialized
    copied.names[0] = "renamed"
    assert table.column("name")[0] != "renamed" and copied[0].name == "renamed"


@pytest.mark.parametrize("text", ["\x000name", "\x000inputs", "%s", "%", '"\\u0000'])
def test_a_row_template_survives_model_text_that_looks_like_its_markers(text):
    signature = LayerSignature(text, "other", None, None, None, ((1, 2), None), (1, 2), 0, 3, 0, (("elementwise", 3),),
                               "counted", text)
    encode = _compact_encoder()
    row = ("n%s", ("a", "\x000inputs"), ("b",), 5, 20, 7)
    expected = encode(vars(make_layer(signature, *row)))
    values = (json.dumps(row[0]), ", ".join(map(json.dumps, row[1])), ", ".join(map(json.dumps, row[2])), *row[3:])
    assert _row_template(signature, encode) % values == expected


def test_c_readers_of_a_lazy_table_see_every_layer(model):
    count = len(list(analyze(load_model(model)).layers))
    assert len(json.loads(json.dumps(analyze(load_model(model)).layers, default=vars))) == count
    assert np.array(analyze(load_model(model)).layers, dtype=object).shape == (count,)
