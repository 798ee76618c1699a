"""Human-readable units go past tera/gibi: a 10**15-MAC layer prints in P, a multi-TiB tensor in TiB."""

from __future__ import annotations

import json

import pytest
from onnx import TensorProto, helper

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.reports import analysis
from segcost.reports.units import human, human_bytes, points


@pytest.mark.parametrize("count, expected", [
    (717_270_000, "717.27 M"), (3 * 10**12, "3.00 T"), (10**15, "1.00 P"), (2_500 * 10**15, "2.50 E"),
    (999, "999"), (-2 * 10**15, "-2.00 P")])
def test_human(count, expected):
    assert human(count) == expected


@pytest.mark.parametrize("count, expected", [
    (1536, "1.50 KiB"), (3 * 2**30, "3.00 GiB"), (2**41, "2.00 TiB"), (5 * 2**50, "5.00 PiB"), (2**61, "2.00 EiB"),
    (512, "512 B")])
def test_human_bytes(count, expected):
    assert human_bytes(count) == expected


def test_a_petamac_model_prints_p_and_tib_and_keeps_exact_integers_in_json():
    """MatMul [10**6 x 10**6] @ [10**6 x 10**3]: 10**15 MACs; its float32 input alone is 4·10**12 B = 3.64 TiB."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="huge")], "huge",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [10**6, 10**6]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [10**6, 10**3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [10**6, 10**3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result = analyze(load_model(model))
    assert result.totals.macs == 10**15
    text = analysis.render(result, "table")
    assert "1.00 P" in text and "TiB" in text
    assert "1000.00 T" not in text and "GiB" not in text.split("huge", 1)[1].splitlines()[0]
    assert json.loads(analysis.render(result, "json"))["totals"]["macs"] == 10**15


@pytest.mark.parametrize(("value", "expected"), [(-0.001, "0.00"), (-0.004, "0.00"), (0.0, "0.00"), (-0.0, "0.00"),
                                                 (1.234, "1.23"), (-0.006, "-0.01"), (53.4, "53.40")])
def test_points_never_prints_a_negative_zero(value, expected):
    assert points(value) == expected
