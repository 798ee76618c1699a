"""`segcost check` on a count segcost knows is partial: MAC budgets fail, the reason is in every format."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

FORMATS = ("table", "json", "junit", "github", "md")


def _conv_weight(name: str = "W") -> onnx.TensorProto:
    return nh.from_array(np.ones((8, 8, 3, 3), np.float32), name)


def local_function_model(path) -> str:
    """Two calls of a model-local function Block(x, W) = Conv(x, W): 2 x 147,456 MACs segcost cannot see."""
    block = h.make_function("local", "Block", ["x", "W"], ["y"],
                            [h.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])],
                            [h.make_opsetid("", 17)])
    nodes = [h.make_node("Block", ["x", "W"], ["a"], domain="local", name="b1"),
             h.make_node("Block", ["a", "W"], ["y"], domain="local", name="b2")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [_conv_weight()])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("local", 1)],
                         functions=[block])
    onnx.save(model, path)
    return str(path)


def foreign_domain_model(path) -> str:
    """One counted Conv, then a Conv in a vendor domain (no cost rule)."""
    nodes = [h.make_node("Conv", ["x", "W"], ["a"], pads=[1, 1, 1, 1], name="c1"),
             h.make_node("Conv", ["a", "W"], ["y"], domain="com.vendor.npu", name="c2")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_conv_weight()])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.vendor.npu", 1)]),
              path)
    return str(path)


def shape_trip_loop_model(path, data_dependent: bool = False) -> str:
    """A Loop whose trip count is Shape(x)[2] = 16 (resolved at load: 16 trips counted), or with
    `data_dependent` the input's largest value (unknown before run time: counted as one trip)."""
    body = h.make_graph(
        [h.make_node("Conv", ["s", "W"], ["s_out"], pads=[1, 1, 1, 1]),
         h.make_node("Identity", ["c"], ["c_out"])], "body",
        [h.make_tensor_value_info("i", TensorProto.INT64, []), h.make_tensor_value_info("c", TensorProto.BOOL, []),
         h.make_tensor_value_info("s", TensorProto.FLOAT, [1, 8, 16, 16])],
        [h.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         h.make_tensor_value_info("s_out", TensorProto.FLOAT, [1, 8, 16, 16])])
    nodes = [h.make_node("Shape", ["x"], ["shape"]),
             h.make_node("Gather", ["shape", "two"], ["trips"], axis=0),
             h.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body, name="loop")]
    if data_dependent:
        nodes[:2] = [h.make_node("ReduceMax", ["x"], ["peak"], keepdims=0),
                     h.make_node("Cast", ["peak"], ["trips"], to=TensorProto.INT64)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
                         [_conv_weight(), nh.from_array(np.array(2, np.int64), "two"),
                          nh.from_array(np.array(True), "cond")])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return str(path)


def data_trip_loop_model(path) -> str:
    return shape_trip_loop_model(path, data_dependent=True)


BUILDERS = {"foreign domain": (foreign_domain_model, "com.vendor.npu:Conv x1"),
            "loop one trip": (data_trip_loop_model, "1 Loop counted as one trip")}


@pytest.mark.parametrize("build, macs", [(local_function_model, 2 * 147_456), (shape_trip_loop_model, 16 * 147_456)])
def test_counts_made_exact_at_load_are_not_partial(run_cli, tmp_path, build, macs):
    """Local functions are inlined and a Shape-fed trip count is resolved at load: the budget sees every MAC."""
    model = build(tmp_path / "m.onnx")
    code, out, _ = run_cli("check", model, "--max-gmacs", "1000", "--format", "json")
    document = json.loads(out)
    assert code == 0 and document["outcomes"][0]["partial"] == "", out
    assert document["models"][0]["coverage"]["partial"] is False
    assert f"{macs:,}" in run_cli("check", model, "--max-gmacs", "1000")[1]


@pytest.mark.parametrize("case", sorted(BUILDERS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_partial_count_fails_mac_budget_in_every_format(run_cli, tmp_path, case, fmt):
    build, reason = BUILDERS[case]
    model = build(tmp_path / "m.onnx")
    code, out, err = run_cli("check", model, "--max-gmacs", "1000", "--format", fmt)
    assert code == 1, out + err
    assert "MACs are a lower bound" in out and reason in out
    if fmt == "json":
        document = json.loads(out)
        assert document["passed"] is False and document["outcomes"][0]["partial"].startswith("MACs are a lower")
        assert document["models"][0]["coverage"]["partial"] is True
    if fmt == "junit":
        root = ElementTree.fromstring(out.split("\n", 1)[1])
        assert root.get("failures") == "1" and root.find(".//system-out") is not None


@pytest.mark.parametrize("fmt", FORMATS)
def test_allow_partial_passes_and_still_says_so(run_cli, tmp_path, fmt):
    model = foreign_domain_model(tmp_path / "m.onnx")
    code, out, _ = run_cli("check", model, "--max-gmacs", "1000", "--allow-partial", "--format", fmt)
    assert code == 0 and "MACs are a lower bound" in out


def test_params_budget_is_not_affected_and_config_key(run_cli, tmp_path, monkeypatch):
    foreign_domain_model(tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli("check", "m.onnx", "--max-params-m", "1")
    assert code == 0, out
    (tmp_path / "segcost.toml").write_text('[[models]]\npath = "m.onnx"\nmax_gmacs = 1.0\n')
    assert run_cli("check")[0] == 1
    (tmp_path / "segcost.toml").write_text('[[models]]\npath = "m.onnx"\nmax_gmacs = 1.0\nallow_partial = true\n')
    assert run_cli("check")[0] == 0
    (tmp_path / "segcost.toml").write_text('[[models]]\npath = "m.onnx"\nmax_gmacs = 1.0\nallow_partial = 1\n')
    code, _, err = run_cli("check")
    assert code == 2 and "allow_partial must be true or false" in err


def test_non_mac_budget_passes_with_the_note(run_cli, tmp_path):
    model = foreign_domain_model(tmp_path / "m.onnx")
    onnx.save(onnx.load(model), tmp_path / "m.onnx")
    code, out, _ = run_cli("check", str(tmp_path / "m.onnx"), "--max-unsupported-ops", "1")
    assert code == 0 and "lower bound: " in out   # the note is shown, a non-MAC budget passes


def test_api_check_partial(tmp_path):
    from segcost.api import check

    model = foreign_domain_model(tmp_path / "m.onnx")
    assert not check(model, max_gmacs=1000).passed
    assert check(model, max_gmacs=1000, allow_partial=True).passed


def test_analyze_names_the_domain_of_unknown_ops(run_cli, tmp_path):
    model = foreign_domain_model(tmp_path / "m.onnx")
    code, out, _ = run_cli("analyze", model)
    assert code == 0 and "unsupported ops (counted as 0): com.vendor.npu:Conv x1" in out


def test_latency_budget_uses_the_gaps_of_the_graph_it_prices(run_cli, tmp_path):
    """Latency is priced on the folded graph: the Shape-fed Loop has 16 known trips there; a vendor op has no cost."""
    loop = shape_trip_loop_model(tmp_path / "loop.onnx")
    code, out, _ = run_cli("check", loop, "--target", "tda4vm", "--max-latency-ms", "1000", "--format", "json")
    assert code == 0 and json.loads(out)["outcomes"][0]["partial"] == ""
    foreign = foreign_domain_model(tmp_path / "foreign.onnx")
    code, out, _ = run_cli("check", foreign, "--target", "tda4vm", "--max-latency-ms", "1000", "--format", "json")
    assert code == 1 and "com.vendor.npu:Conv x1" in json.loads(out)["outcomes"][0]["partial"]
