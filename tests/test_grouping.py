"""--group-by: op type, kind and name-prefix subtotals add up to the totals exactly."""

from __future__ import annotations

import csv
import io
import json

import pytest

from segcost.analyzer import analyze
from segcost.analyzer.grouping import group_layers, name_prefix, parse_group_by
from segcost.errors import InputError
from segcost.frontends.onnx import load_model
from segcost.samples import deeplabv3lite


@pytest.mark.parametrize(("name", "depth", "prefix"), [
    ("/encoder/features.1/conv/conv.0/Conv", 1, "/encoder"),
    ("/encoder/features.1/conv/conv.0/Conv", 2, "/encoder/features.1"),
    ("encoder.block1.expand", 1, "encoder"),
    ("encoder.block1.expand", 2, "encoder.block1"),
    ("classifier", 1, "classifier"),
    ("head.upsample", 5, "head.upsample"),
])
def test_name_prefix(name, depth, prefix):
    assert name_prefix(name, depth) == prefix


def test_parse_group_by():
    assert parse_group_by("op_type") == ("op_type", 1)
    assert parse_group_by("prefix:3") == ("prefix", 3)
    for bad in ("layer", "prefix:0", "prefix:x", "kind:2", "prefix:", "prefix:²"):
        with pytest.raises(InputError):
            parse_group_by(bad)


@pytest.mark.parametrize(("key", "depth"), [("op_type", 1), ("kind", 1), ("prefix", 1), ("prefix", 2), ("prefix", 9)])
def test_groups_add_up_to_the_totals(key, depth):
    result = analyze(load_model(deeplabv3lite(width=0.5, height=128, width_px=128)))
    groups = group_layers(result.layers, key, depth)
    assert sum(group.count for group in groups.values()) == len(result.layers)
    for field in ("macs", "flops", "params"):
        assert sum(getattr(group, field) for group in groups.values()) == getattr(result.totals, field)
    macs = [group.macs for group in groups.values()]
    assert macs == sorted(macs, reverse=True)
    if key == "prefix" and depth == 1:
        assert {"encoder", "aspp", "decoder", "head"} == set(groups)


def test_cli_group_by(run_cli, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(deeplabv3lite(width=0.5, height=128, width_px=128).SerializeToString())
    code, out, _ = run_cli("analyze", str(path), "--group-by", "prefix:2", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    _, json_out, _ = run_cli("analyze", str(path), "--format", "json", "--group-by", "kind")
    document = json.loads(json_out)
    assert code == 0 and sum(int(row["macs"]) for row in rows) == document["totals"]["macs"]
    assert document["groups"]["key"] == "kind"
    assert sum(row["macs"] for row in document["groups"]["rows"].values()) == document["totals"]["macs"]
    assert len(document["layers"]) == document["totals"]["nodes"]       # the layers are still there
    code, out, _ = run_cli("analyze", str(path), "--group-by", "prefix")
    assert code == 0 and "prefix" in out and "encoder" in out
    code, _, err = run_cli("analyze", str(path), "--group-by", "layer")
    assert code == 2 and err.count("\n") == 1 and "--group-by" in err


@pytest.mark.parametrize("options", [("--format", "html", "--group-by", "kind"), ("--format", "csv", "--count", "all"),
                                     ("--format", "csv", "--target", "cpu"), ("--group-by", "kind", "--top", "3"),
                                     ("--symbolic", "--count", "bias")])
def test_options_a_report_would_not_use_are_refused(run_cli, options):
    code, out, err = run_cli("analyze", *options)
    assert code == 2 and out == "" and err.count("\n") == 1 and "does not" in err


def _torch_style_with_unnamed_nodes():
    """Scoped Conv layers whose weights pass through unnamed Identity nodes, as torch.onnx exports smp models:
    three "Identity_N" (torch's generated names), one Identity with an empty name, an unscoped user-named "stem"."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.conftest import weight

    nodes = [helper.make_node("Conv", ["x", "w0"], ["s"], name="stem", pads=[1, 1, 1, 1])]
    names = ["Identity_20", "Identity_21", "", "Identity_23__1"]
    previous = "s"
    for index, name in enumerate(names):
        nodes.append(helper.make_node("Identity", ["w"], [f"w{index + 1}"], name=name))
        nodes.append(helper.make_node("Conv", [previous, f"w{index + 1}"], [f"c{index}"], pads=[1, 1, 1, 1],
                                      name=f"/encoder/layer{index}/conv/Conv"))
        previous = f"c{index}"
    graph = helper.make_graph(nodes, "unnamed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weight(4, 4, 3, 3), "w0"),
                               numpy_helper.from_array(weight(4, 4, 3, 3), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("depth", [1, 2])
def test_unnamed_nodes_group_per_op_type(depth):
    """torch.onnx's generated "Identity_20" names (and empty ones) carry no prefix: one "(unnamed Identity)" row,
    not one row per node; user-given names without a scope ("stem") stay their own group."""
    result = analyze(load_model(_torch_style_with_unnamed_nodes()))
    groups = group_layers(result.layers, "prefix", depth)
    assert groups["(unnamed Identity)"].count == 4
    assert not any(name.startswith("Identity") for name in groups)
    assert groups["stem"].count == 1
    expected = {1: {"/encoder": 4}, 2: {f"/encoder/layer{index}": 1 for index in range(4)}}[depth]
    assert {name: group.count for name, group in groups.items() if name.startswith("/")} == expected
    assert sum(group.params for group in groups.values()) == result.totals.params


def test_cli_group_by_prefix_has_one_unnamed_row(run_cli, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(_torch_style_with_unnamed_nodes().SerializeToString())
    code, out, _ = run_cli("analyze", str(path), "--group-by", "prefix:2", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    unnamed = [row for row in rows if "Identity" in row["prefix"]]
    assert code == 0 and len(rows) == 6 and [(row["prefix"], row["count"]) for row in unnamed] == [
        ("(unnamed Identity)", "4")]


@pytest.mark.parametrize("key", ["op_type", "kind"])
def test_groups_from_signatures_equal_groups_from_the_layer_objects(key):
    """A LayerTable is grouped per distinct signature (counts times values); the LayerCost objects layer by
    layer: the same groups, in the same order (several signatures per label, one label for all)."""
    result = analyze(load_model(deeplabv3lite(width=0.35, num_classes=3, height=64, width_px=64)))
    assert not result.layers.materialized
    from_signatures = group_layers(result.layers, key)
    assert not result.layers.materialized
    from_objects = group_layers(list(result.layers), key)
    assert list(from_signatures.items()) == list(from_objects.items())
    assert len(result.layers.signatures) > len(from_signatures) > 1
