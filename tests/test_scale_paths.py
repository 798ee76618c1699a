"""The fast paths that large graphs take give the same answers as the plain ones they replace."""

from __future__ import annotations

import os
import random

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tabulate import tabulate

from segcost.errors import GraphError, InputError
from segcost.frontends import protoscan
from segcost.frontends.onnx import _check_attributes, load, read_model
from segcost.ir import Graph, Node
from segcost.ir.datafile import HeldFile
from segcost.ir.onnx_io import read_value_infos
from segcost.reports.tables import markdown_cell, markdown_rows, plain_text
from segcost.reports.tables import text_table as _table
from segcost.samples import deeplabv3lite
from segcost.samples.scale import deep, wide


def _random_table(rng: random.Random) -> tuple[list[list], list[str]]:
    pieces = ["a", " ", "x1", "-", "", "  y ", "{}", "%", "0.0", "1e5", "True", "None", "1,000", "|", ":", "`",
              "é", "\n", "\t", "\x1b[31m", "中"]
    headers = ["".join(rng.choice(["h", "#", "ab", " ", "|"]) for _ in range(rng.randint(1, 4))).strip() or "h"
               for _ in range(rng.randint(1, 5))]
    rows = [[rng.choice([None, rng.randint(-10, 10**6), "".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))])
             for _ in headers] for _ in range(rng.randint(0, 6))]
    return rows, headers


def test_text_tables_are_laid_out_as_tabulate_does():
    rng = random.Random(0)
    for _ in range(2000):
        rows, headers = _random_table(rng)
        # model text is escaped first (reports.tables.plain_text: control characters never reach a terminal)
        escaped = [[plain_text(cell) if isinstance(cell, str) else cell for cell in row] for row in rows]
        expected = tabulate(escaped, headers=[plain_text(header) for header in headers], tablefmt="simple",
                            disable_numparse=True)
        assert _table(rows, headers, markdown=False) == expected, (rows, headers)


def test_markdown_tables_are_laid_out_as_tabulate_does():
    rng = random.Random(1)
    for _ in range(3000):
        rows, headers = _random_table(rng)
        expected = tabulate(markdown_rows(rows), headers=[markdown_cell(header) for header in headers],
                            tablefmt="github", disable_numparse=True)
        assert _table(rows, headers, markdown=True) == expected, (rows, headers)


def test_model_text_tables_are_laid_out_as_tabulate_does():
    from segcost.analyzer import analyze
    from segcost.frontends.onnx import load_model
    from segcost.reports import analysis

    result = analyze(load_model(deeplabv3lite(width=0.35, num_classes=3, height=32, width_px=32)))
    rows = [[index, layer.name, layer.op_type, analysis._shape_text(layer), layer.macs]
            for index, layer in enumerate(result.layers, start=1)]
    headers = ["#", "layer", "op", "kernel", "MACs"]
    assert _table(rows, headers, markdown=False) == tabulate(rows, headers=headers, tablefmt="simple",
                                                             disable_numparse=True)


@pytest.mark.parametrize("build", [deep, wide])
def test_scan_with_a_tiny_window_reads_the_same_structure(tmp_path, monkeypatch, build):
    """Fields straddle the read window's edges when it is small; the result must not change."""
    path = tmp_path / "model.onnx"
    onnx.save_model(build(60), path)
    default_bytes, default_regions, default_nodes = protoscan.scan(path)
    monkeypatch.setattr(protoscan._FileWindow, "WINDOW", 37)
    small_bytes, small_regions, small_nodes = protoscan.scan(path)
    assert (small_bytes, small_regions, small_nodes) == (default_bytes, default_regions, default_nodes)
    stripped, _ = read_model(path)
    original = onnx.load(path)
    assert [node.SerializeToString() for node in stripped.graph.node] == \
        [node.SerializeToString() for node in original.graph.node]
    only_nodes = onnx.GraphProto()
    only_nodes.node.extend(original.graph.node)
    assert default_nodes == only_nodes.SerializeToString()   # the node fields, as a GraphProto of them
    assert len(default_regions) == len(original.graph.initializer)  # every 2.3 KB conv weight is skipped


def test_node_fields_between_other_fields_are_read_in_order(tmp_path):
    """A graph whose nodes lie between its initializers and name (protobuf reads a repeated field's
    occurrences in order): scan returns the node fields in that order, and the loader's shape
    inference, assembled from them, gives the shapes and MACs of the file's parse."""
    from segcost.analyzer import analyze
    from segcost.frontends.onnx import load_model

    model = deep(12)
    pieces = [[protoscan._encode_varint(protoscan.GRAPH_NODE << 3 | 2), node] for node in model.graph.node]
    rng = random.Random(0)
    for other in [[protoscan._INITIALIZER_KEY, tensor] for tensor in model.graph.initializer] + [[b"\x12", b"g"]]:
        pieces.insert(rng.randrange(1, len(pieces)), other)   # nodes keep their order; field 2 is the name
    graph = b"".join(key + protoscan._encode_varint(len(value)) + value
                     for key, value in ((key, value if isinstance(value, bytes) else value.SerializeToString())
                                        for key, value in pieces))
    tail = onnx.GraphProto(input=model.graph.input, output=model.graph.output).SerializeToString()
    data = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import).SerializeToString()
    path = tmp_path / "model.onnx"
    path.write_bytes(data + b"\x3a" + protoscan._encode_varint(len(graph + tail)) + graph + tail)
    parsed = onnx.load(path)
    _, _, nodes = protoscan.scan(path)
    assert nodes == b"".join(protoscan._encode_varint(protoscan.GRAPH_NODE << 3 | 2)
                             + protoscan._encode_varint(node.ByteSize()) + node.SerializeToString()
                             for node in parsed.graph.node)
    assert [node.name for node in parsed.graph.node] == [node.name for node in model.graph.node]
    from_file, from_message = load(path), load_model(parsed)
    assert from_file.tensors == from_message.tensors
    assert analyze(from_file).totals == analyze(from_message).totals


def test_a_file_cut_inside_a_field_is_refused(tmp_path):
    path = tmp_path / "cut.onnx"
    data = deep(30).SerializeToString()
    path.write_bytes(data[:len(data) - 3])
    with pytest.raises(Exception, match="truncated or corrupt"):
        protoscan.scan(path)


def _nodes(*specs: tuple[str, list[str], list[str]]) -> list[tuple[str, Node]]:
    return [(name, Node(name, "Op", inputs=list(inputs), outputs=list(outputs))) for name, inputs, outputs in specs]


def _wiring(graph: Graph):
    return (list(graph.dag.nodes), [(u, v, sorted(t)) for u, v, t in graph.dag.edges(data="tensors")],
            dict(graph._producer), {tensor: sorted(users) for tensor, users in graph._consumers.items()},
            {key: graph.node(key).meta["order"] for key in graph.dag})


def test_bulk_insert_wires_as_one_by_one():
    # b reads a's output twice, c is listed before its producer d, e reads an outside tensor
    specs = (("a", ["x"], ["t1"]), ("b", ["t1", "t1", ""], ["t2"]), ("c", ["t3", "t2"], ["t4"]),
             ("d", ["t2"], ["t3"]), ("e", ["w"], ["t5"]))
    one_by_one, bulk = Graph(), Graph()
    for key, node in _nodes(*specs):
        one_by_one.add_node(node, key=key)
    bulk.add_nodes(_nodes(*specs))
    assert _wiring(bulk) == _wiring(one_by_one)
    # adding more nodes to a graph that has some: a consumer that is already there gets its edge
    one_by_one.add_node(Node("f", "Op", inputs=["t5"], outputs=["t6"]), key="f")
    one_by_one.add_node(Node("g", "Op", inputs=["t6"], outputs=["w"]), key="g")
    bulk.add_nodes(_nodes(("f", ["t5"], ["t6"]), ("g", ["t6"], ["w"])))
    assert _wiring(bulk) == _wiring(one_by_one)
    assert bulk.dag.has_edge("g", "e")


@pytest.mark.parametrize("specs, message", [
    ((("a", ["x"], ["t"]), ("b", ["x"], ["t"])), "produced by two nodes"),
    ((("a", ["x"], ["t"]), ("a", ["x"], ["u"])), "duplicate node key"),
    ((("a", ["x"], ["t"]), ("first", ["x"], ["u"])), "duplicate node key"),
    ((("a", ["x"], ["y"]),), "produced by two nodes"),
])
def test_bulk_insert_checks_and_changes_nothing_on_error(specs, message):
    graph = Graph()
    graph.add_node(Node("first", "Op", inputs=["x"], outputs=["y"]), key="first")
    before = _wiring(graph)
    with pytest.raises(GraphError, match=message):
        graph.add_nodes(_nodes(*specs))
    assert _wiring(graph) == before


def test_value_infos_sharing_a_type_keep_their_own_shapes():
    graph = Graph()
    value_infos = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 8]),
                   helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 8]),
                   helper.make_tensor_value_info("c", TensorProto.INT64, [1, 8]),
                   helper.make_tensor_value_info("d", TensorProto.FLOAT, ["batch", None]),
                   helper.make_tensor_value_info("skipped", TensorProto.FLOAT, [3])]
    read_value_infos(graph, value_infos, skip={"skipped"})
    assert {name: (info.dtype, info.shape) for name, info in graph.tensors.items()} == {
        "a": (TensorProto.FLOAT, (1, 8)), "b": (TensorProto.FLOAT, (1, 8)), "c": (TensorProto.INT64, (1, 8)),
        "d": (TensorProto.FLOAT, ("batch", None))}
    # a later entry without a shape keeps the known one, and one without a type the known type
    read_value_infos(graph, [helper.make_empty_tensor_value_info("a")])
    assert (graph.tensors["a"].dtype, graph.tensors["a"].shape) == (TensorProto.FLOAT, (1, 8))
    # ... also within one list
    fresh = Graph()
    read_value_infos(fresh, [value_infos[0], value_infos[3], value_infos[1],
                             helper.make_tensor_value_info("d", TensorProto.FLOAT, None)])
    assert (fresh.tensors["d"].dtype, fresh.tensors["d"].shape) == (TensorProto.FLOAT, ("batch", None))
    assert list(fresh.tensors) == ["a", "d", "b"]   # in the list's order, a name that comes twice at its first place


def test_a_text_error_is_reported_before_an_earlier_attribute_error():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
             helper.make_node("Relu", ["y"], ["z"], name="relu")]
    nodes[0].attribute.append(helper.make_attribute("group", [1, 2]))  # wrong type: INTS
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(GraphError, match="attribute 'group' is INTS, the op needs INT"):
        _check_attributes(model)
    # a node name that is not UTF-8 (protobuf hands such proto2 strings back as bytes)
    data = model.SerializeToString().replace(b"relu", b"rel\xff")
    broken = onnx.ModelProto()
    broken.ParseFromString(data)
    with pytest.raises(GraphError, match="not valid UTF-8"):
        _check_attributes(broken)


@pytest.mark.parametrize("field", ["node name", "op type", "domain", "doc string", "node input", "node output",
                                   "attribute name", "graph input", "initializer", "producer"])
def test_a_string_that_is_not_utf8_is_found_in_every_text_field(field):
    """Each column the loader checks at C speed (str.join) finds one bytes value among many strings."""
    nodes = [helper.make_node("Relu", [f"t{index}"], [f"t{index + 1}"], name=f"n{index}", doc_string="doc")
             for index in range(40)]
    nodes.append(helper.make_node("Transpose", ["t40"], ["t41"], name="perm", perm=[0, 1]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("t41", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(np.ones(2, np.float32), "wt")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="prod")
    target = {"node name": b"n17", "op type": b"Relu", "domain": None, "doc string": b"doc", "node input": b"t17",
              "node output": b"t41", "attribute name": b"perm", "graph input": b"t0", "initializer": b"wt",
              "producer": b"prod"}[field]
    if field == "domain":
        model.graph.node[17].domain = "dd"
        target = b"dd"
    _check_attributes(model)   # valid as built
    data = model.SerializeToString()
    assert target in data
    broken = onnx.ModelProto()
    broken.ParseFromString(data.replace(target, target[:-1] + b"\xff"))
    with pytest.raises(GraphError, match="not valid UTF-8"):
        _check_attributes(broken)


def test_large_graph_loads_with_every_shape(tmp_path):
    path = tmp_path / "deep.onnx"
    onnx.save_model(deep(300), path)
    graph = load(path)
    assert all(graph.shape(tensor) == (1, 8, 8, 8) for key in graph.dag for tensor in graph.node(key).outputs)
    assert not any(name in graph.tensors for name in graph.initializers)


def test_a_large_graph_gives_freed_memory_back_after_inference(monkeypatch):
    """Past RETURN_MEMORY_MIN_NODES the loader trims the heap (glibc); it must run wherever the loader runs."""
    from segcost.frontends import onnx as onnx_frontend

    calls = []
    trim = onnx_frontend._return_freed_memory
    monkeypatch.setattr(onnx_frontend, "_return_freed_memory", lambda: calls.append(trim()))
    monkeypatch.setattr(onnx_frontend, "RETURN_MEMORY_MIN_NODES", 4)
    onnx_frontend.load_model(deep(3))
    assert calls == []   # one node below the size
    onnx_frontend.load_model(deep(9))
    assert calls == [None]


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2303, 16383, 16384, 2**21 - 1, 2**21, 2**35 + 7, 2**62])
def test_varints_read_and_write_as_protobuf_does(value):
    tensor = onnx.TensorProto()
    tensor.dims.append(value)
    serialized = tensor.SerializeToString()   # the dims key (one byte), then the varint
    assert protoscan._encode_varint(value) == serialized[1:]
    assert protoscan._varint(serialized, 1, len(serialized), None) == (value, len(serialized))
    # a varint cut short by its message's end is an error, whatever its length
    if len(serialized) > 2:
        reader = protoscan._Reader(None, "model.onnx")
        with pytest.raises(InputError, match="bad varint"):
            protoscan._varint(serialized, 1, len(serialized) - 1, reader)


def _graph_field_by_field(reader, start: int, end: int, skipped: dict, node_runs: list) -> bytes:
    """The graph walk as `_Reader.fields` spells it, one field at a time (what the unrolled loop replaces)."""
    out, index = bytearray(), 0
    for number, wire_type, field_start, payload, field_end in reader.fields(start, end):
        if number == protoscan.GRAPH_NODE and wire_type == protoscan.WIRE_LENGTH:
            node_runs.append((field_start, field_end))   # one range per node: the same bytes joined
        if number == protoscan.GRAPH_INITIALIZER and wire_type == protoscan.WIRE_LENGTH:
            tensor, region = protoscan._tensor_without_payload(reader, payload, field_end)
            if region is not None:
                skipped[index] = region
            out += protoscan._INITIALIZER_KEY + protoscan._encode_varint(len(tensor)) + tensor
            index += 1
        else:
            out += reader.buffer[field_start:field_end]
    return bytes(out)


@pytest.mark.parametrize("window", [37, 300, 1024 * 1024])
def test_the_unrolled_graph_walk_reads_as_the_field_walk_does(tmp_path, monkeypatch, window):
    """Same bytes, regions and error message as field-by-field, on a model and 300 corruptions of it."""
    model = deep(30)
    model.graph.initializer[3].ClearField("raw_data")   # a float_data payload, and a small tensor kept inline
    model.graph.initializer[3].float_data.extend([0.5] * 576)
    model.graph.initializer[5].float_data.extend([0.5] * 576)   # two payloads: kept inline
    model.graph.initializer.append(numpy_helper.from_array(np.arange(4, dtype=np.int64), "shape"))
    data = model.SerializeToString()
    (tmp_path / "model.onnx").write_bytes(data)
    payloads = {at for offset, length in protoscan.scan(tmp_path / "model.onnx")[1].values()
                for at in range(offset, offset + length)}
    structure = [at for at in range(len(data)) if at not in payloads]   # keys, lengths, names, dims
    rng = random.Random(window)
    monkeypatch.setattr(protoscan._FileWindow, "WINDOW", window)
    outcomes = set()
    unrolled = protoscan._graph_without_payloads
    for case in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 12) if case else 0):
            at = rng.choice(structure)   # a length or key one off, or any byte
            mutated[at] = (mutated[at] + rng.choice([1, -1])) % 256 if case % 2 else rng.randrange(256)
        path = tmp_path / "model.onnx"
        path.write_bytes(bytes(mutated[:rng.randrange(len(mutated)) if case % 7 == 3 else None]))
        results = []
        for walk in (unrolled, _graph_field_by_field):
            monkeypatch.setattr(protoscan, "_graph_without_payloads", walk)
            try:
                results.append(protoscan.scan(path))
            except InputError as error:
                results.append(str(error))
        assert results[0] == results[1], case
        outcomes.add(isinstance(results[0], str))
    assert outcomes == {True, False}   # both accepted and refused corruptions were compared


def _random_model(rng: random.Random) -> onnx.ModelProto:
    """A small model with random wiring: reads of later outputs (cycles or not), of nothing, duplicates."""
    count = rng.randint(1, 8)
    names = [f"t{index}" for index in range(count)] + ["x", "w", "missing", "c", ""]
    nodes = []
    for index in range(count):
        known = [f"t{earlier}" for earlier in range(index)] + ["x", "w", "c"]
        inputs = [rng.choice(names if rng.random() < 0.1 else known) for _ in range(rng.randint(1, 3))]
        outputs = [f"t{index}"] if rng.random() > 0.1 else [rng.choice(names[:-1]), f"t{index}"]
        nodes.append(helper.make_node("Add", inputs, outputs, name=rng.choice([f"n{index}", "same", ""])))
    nodes.insert(rng.randrange(len(nodes) + 1), helper.make_node(
        "Constant", [], ["c"], value=numpy_helper.from_array(np.ones(2, np.float32)), name="const"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info(rng.choice(names[:-1]), TensorProto.FLOAT, [2])],
                              initializer=[numpy_helper.from_array(np.ones(2, np.float32), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_readers_checks_and_tables_are_verify_graphs_and_add_nodes():
    """from_model(verify=True) checks in its walk what verify_graph's walk over every input checks, and fills
    the node tables as add_nodes does: same errors, producers, orders and schedule on 600 random wirings."""
    from segcost.ir.onnx_io import from_model
    from segcost.ir.verify import verify_graph

    def outcome(build):
        try:
            graph = build()
        except GraphError as error:
            return str(error)
        return (dict(graph._producer), {key: node.meta["order"] for key, node in graph.nodes.items()},
                graph._next_order, graph.topological_order())

    def plain(model):
        read = from_model(model)   # then rebuilt through add_nodes and checked by the full walk
        graph = Graph(read.info)
        graph.initializers, graph.inputs, graph.outputs = read.initializers, read.inputs, read.outputs
        graph.add_nodes(list(read.nodes.items()))
        verify_graph(graph)
        return graph

    rng = random.Random(5)
    kinds = set()
    for _ in range(600):
        model = _random_model(rng)
        fast = outcome(lambda: from_model(model, verify=True))   # noqa: B023 - called at once
        slow = outcome(lambda: plain(model))   # noqa: B023
        assert fast == slow, onnx.printer.to_text(model.graph)
        kinds.add(fast.split(" ")[0] if isinstance(fast, str) else "ok")
    assert {"ok", "graph", "node", "tensor"} <= kinds   # outputs, reads and producers refused, and accepted


@pytest.mark.parametrize("name, tensor", [
    ("canonical", b"\x08\x08\x08\x08\x08\x03\x08\x03\x10\x01\x42\x02w0\x4a\x80\x12" + bytes(2304)),
    ("10-byte dims varint", b"\x08" + b"\x88" + b"\x80" * 8 + b"\x00\x10\x01\x42\x01w\x4a\x80\x08" + bytes(1024)),
    ("11-byte dims varint", b"\x08" + b"\x88" + b"\x80" * 9 + b"\x00\x10\x01\x42\x01w\x4a\x80\x08" + bytes(1024)),
    ("a field after the payload", b"\x10\x01\x42\x01w\x4a\x80\x08" + bytes(1024) + b"\x70\x00"),
    ("payload past the end", b"\x10\x01\x42\x01w\x4a\x81\x08" + bytes(1024)),
    ("three-byte length", b"\x10\x01\x42\x01w\x4a\x80\x80\x01" + bytes(16384)),
    ("small payload", b"\x10\x01\x42\x01w\x4a\x80\x01" + bytes(128)),
    ("two payloads", b"\x10\x01\x42\x01w\x22\x04" + bytes(4) + b"\x4a\x80\x08" + bytes(1024)),
    ("name length 0x7f", b"\x10\x01\x42\x7f" + b"n" * 127 + b"\x4a\x80\x08" + bytes(1024)),
])
def test_a_weight_in_the_window_reads_as_its_fields_do(tmp_path, name, tensor):
    """The recognized weight layout (and every near miss) gives what walking the tensor's fields gives."""
    path = tmp_path / "tensor.bin"
    path.write_bytes(tensor)
    held = HeldFile(os.open(path, os.O_RDONLY), str(path))
    reader = protoscan._Reader(protoscan._FileWindow(held.fd, held.size), "model.onnx")
    results = []
    for read in (lambda: protoscan._tensor_in_window(tensor, 0, len(tensor), 0, reader),
                 lambda: protoscan._tensor_without_payload(reader, 0, len(tensor))):
        try:
            results.append(read())
        except InputError as error:
            results.append(str(error))
    assert results[0] == results[1]
