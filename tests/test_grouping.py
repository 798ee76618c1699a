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
