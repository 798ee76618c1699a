"""--group-by prefix on torch dynamo exports: generated node names, module paths in node metadata_props."""

from __future__ import annotations

import ast
import json
import warnings

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from segcost.analyzer import analyze
from segcost.analyzer.grouping import group_layers, module_scopes
from segcost.frontends.onnx import load_model
from segcost.ir.onnx_io import to_model


def _scoped(node: onnx.NodeProto, *scopes: str) -> onnx.NodeProto:
    """`node` with the metadata torch.onnx's dynamo exporter writes: root "", module paths, the FX node."""
    helper.set_metadata_props(node, {"pkg.torch.onnx.name_scopes": repr(["", *scopes, "fx_" + node.name]),
                                     "namespace": "kept as is"})
    return node


def _dynamo_style_model() -> onnx.ModelProto:
    """x[1,2,8,8] -> encoder.stage1 (Conv 2->4, Relu) -> encoder.stage2.0 (Conv 4->4) -> decoder (Conv 4->3)
    -> a top-level Relu; every node named as dynamo names them ("node_Conv_7")."""
    rng = np.random.default_rng(0)
    weights = {"w1": (4, 2, 3, 3), "w2": (4, 4, 1, 1), "w3": (3, 4, 1, 1)}
    nodes = [
        _scoped(helper.make_node("Conv", ["x", "w1"], ["a"], name="node_Conv_0", pads=[1, 1, 1, 1]),
                "encoder", "encoder.stage1", "encoder.stage1.conv"),
        _scoped(helper.make_node("Relu", ["a"], ["b"], name="node_relu_1"), "encoder", "encoder.stage1"),
        _scoped(helper.make_node("Conv", ["b", "w2"], ["c"], name="node_Conv_2"),
                "encoder", "encoder.stage2", "encoder.stage2.0"),
        _scoped(helper.make_node("Conv", ["c", "w3"], ["d"], name="node_Conv_3"), "decoder"),
        _scoped(helper.make_node("Relu", ["d"], ["y"], name="node_relu_4")),   # top level: no module
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
                               for name, shape in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_prefix_groups_follow_the_module_path_in_node_metadata():
    result = analyze(load_model(_dynamo_style_model()))
    conv1, conv2, conv3 = 4 * 2 * 9 * 64, 4 * 4 * 64, 3 * 4 * 64
    by_stage = {name: total.macs for name, total in group_layers(result.layers, "prefix", 1, result.scopes).items()}
    assert by_stage == {"encoder": conv1 + conv2, "decoder": conv3, "node_relu_4": 0}
    by_stage = {name: (total.count, total.macs)
                for name, total in group_layers(result.layers, "prefix", 2, result.scopes).items()}
    assert by_stage == {"encoder.stage1": (2, conv1), "encoder.stage2": (1, conv2), "decoder": (1, conv3),
                        "node_relu_4": (1, 0)}
    assert sum(count for count, _ in by_stage.values()) == result.totals.nodes
    assert sum(macs for _, macs in by_stage.values()) == result.totals.macs


def test_node_metadata_props_survive_the_ir_round_trip():
    model = _dynamo_style_model()
    written = to_model(load_model(model))
    assert {node.name: {entry.key: entry.value for entry in node.metadata_props} for node in written.graph.node} \
        == {node.name: {entry.key: entry.value for entry in node.metadata_props} for node in model.graph.node}


@pytest.mark.parametrize("text, scopes", [
    ("['', 'encoder', 'encoder.layer2', 'conv2d_3']", ("encoder", "encoder.layer2")),
    ("['', 'cat_1']", ()),                                                # top level
    ("['_empty_nn_module_stack_from_metadata_hook', 'sym_size_int_76']", ()),   # no root module
    ("__import__('os').system('true')", ()),                              # not a literal: never evaluated
    ("{'': 1}", ()), ("['', 3, 'x']", ()), ("['', 'a', ", ()), ("", ()),
])
def test_module_scopes_reads_only_a_rooted_list_of_names(text, scopes):
    assert module_scopes({"pkg.torch.onnx.name_scopes": text}) == scopes


_TEXT_CHARS = st.sampled_from([*"ab.'\"\\ ,[]\n\r\x00\t", "\ud800", "é"])
_NAMES = st.lists(st.text(_TEXT_CHARS, max_size=5), max_size=4)


@pytest.mark.filterwarnings("ignore:invalid escape sequence")   # literal_eval of "\\ " and such
@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(_TEXT_CHARS, max_size=30),
                 _NAMES.map(lambda names: "['', " + ", ".join(f"'{name}'" for name in names) + "]")))
def test_module_scopes_reads_what_literal_eval_reads(text):
    """The fast path for torch's plain repr gives what ast.literal_eval gives, escapes and odd characters too."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = None
    rooted = (isinstance(value, list) and len(value) >= 3 and value[0] == ""
              and all(isinstance(name, str) and name for name in value[1:]))
    assert module_scopes({"pkg.torch.onnx.name_scopes": text}) == (tuple(value[1:-1]) if rooted else ())


def test_cli_groups_a_dynamo_style_model_by_module(run_cli, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_dynamo_style_model(), path)
    code, out, err = run_cli("analyze", str(path), "--group-by", "prefix:2", "--format", "json")
    assert code == 0, err
    assert set(json.loads(out)["groups"]["rows"]) == {"encoder.stage1", "encoder.stage2", "decoder", "node_relu_4"}


@pytest.mark.slow
@pytest.mark.torch
def test_dynamo_and_legacy_exports_give_the_same_stage_macs(run_cli, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.layer2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 1))

        def forward(self, x):
            return self.layer2(self.layer1(self.stem(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.head = nn.Conv2d(16, 5, 1)

        def forward(self, x):
            return nn.functional.interpolate(self.head(self.encoder(x)), scale_factor=2.0, mode="bilinear")

    model, example = Net().eval(), torch.zeros(1, 3, 32, 48)
    legacy, dynamo = tmp_path / "legacy.onnx", tmp_path / "dynamo.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(legacy), dynamo=False, opset_version=17, input_names=["input"])
        torch.onnx.export(model, (example,), str(dynamo), dynamo=True, input_names=["input"])
    capsys.readouterr()   # the exporters' progress lines
    for depth in (1, 2):
        stages = []
        for path in (legacy, dynamo):
            code, out, err = run_cli("analyze", str(path), "--group-by", f"prefix:{depth}", "--format", "json")
            assert code == 0, err
            rows = json.loads(out)["groups"]["rows"]
            # legacy names "/encoder/layer1" are dynamo's "encoder.layer1"; a leaf module less deep than DEPTH
            # is one group either way, under its node's name in a legacy export ("/head/Conv")
            stages.append({name.lstrip("/").replace("/", "."): row["macs"] for name, row in rows.items()
                           if row["macs"] and (depth == 1 or "encoder" in name)})
        assert stages[0] == stages[1] and len(stages[1]) == (2 if depth == 1 else 3), stages


@pytest.mark.parametrize("scoped", [(), (4,), (0, 2)])
def test_node_metadata_read_from_a_file_is_kept_whichever_nodes_have_it(tmp_path, scoped):
    """A file's nodes are read without their metadata_props only when no node field holds the field's key
    byte (onnx_io.NODE_METADATA_KEY); metadata on any node, the last one alone say, is kept."""
    from segcost.frontends.onnx import load

    model = _dynamo_style_model()
    for index, node in enumerate(model.graph.node):
        if index not in scoped:
            del node.metadata_props[:]
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    graph = load(path)
    assert {node.name: node.metadata_props for node in graph.nodes.values()} == \
        {node.name: {entry.key: entry.value for entry in node.metadata_props} for node in model.graph.node}
    assert sum(bool(node.metadata_props) for node in graph.nodes.values()) == len(scoped)


@pytest.mark.parametrize("text, scopes", [
    (r"['', 'enc\d', 'enc\d.0', 'conv']", (r"enc\d", r"enc\d.0")),   # an invalid escape Python still reads
    (r"['', 'a\N{no such name}', 'b']", ()),                          # unparsable escapes
    (r"['', 'a\x', 'b']", ()),
    (r"['', 'a\d', 'b'", ()),                                         # malformed literals
    (r"['', 'a\d', 'b'] + ['c']", ()),
    ("['', 'a', 'b']]", ()),
    ("[" * 5000 + "]" * 5000, ()),                                     # nested beyond the parser's limit
])
@pytest.mark.parametrize("action", ["always", "error"])   # shown, or -W error: neither changes the result
def test_module_scopes_odd_metadata_is_read_silently_or_has_no_scope(capfd, text, scopes, action):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter(action)
        assert module_scopes({"pkg.torch.onnx.name_scopes": text}) == scopes
    assert caught == []
    assert capfd.readouterr() == ("", "")
