"""--count: each convention category moves the total by exactly its subtotal; the header says which."""

from __future__ import annotations

import json

import pytest

from segcost.analyzer import analyze
from segcost.analyzer.conventions import CATEGORIES, convention_line, convention_totals, parse_counted
from segcost.errors import InputError
from segcost.frontends.onnx import load_model
from segcost.samples import deeplabv3lite


@pytest.fixture(scope="module")
def result():
    return analyze(load_model(deeplabv3lite(width=0.5, height=128, width_px=128)))


def test_each_category_adds_exactly_its_subtotal(result):
    base = convention_totals(result, [])
    assert base.macs == base.conv_gemm_macs == result.totals.macs
    for name in CATEGORIES:
        assert convention_totals(result, [name]).macs == result.totals.macs + base.subtotals[name]
    everything = convention_totals(result, list(CATEGORIES))
    assert everything.macs == result.totals.macs + sum(base.subtotals.values())
    assert all(isinstance(value, int) for value in base.subtotals.values())
    # this model has every category but pooling and elementwise work beyond the residual adds
    assert base.subtotals["bn"] > 0 and base.subtotals["activation"] > 0 and base.subtotals["resize"] > 0
    # the categories are elementary ops, so they are inside FLOPs = 2*MACs + elementary ops
    assert sum(base.subtotals.values()) <= result.totals.flops - 2 * result.totals.macs


def test_parse_counted():
    assert parse_counted("none") == [] and parse_counted("") == []
    assert parse_counted("all") == list(CATEGORIES)
    assert parse_counted("resize,bias") == ["bias", "resize"]      # report order, not typing order
    with pytest.raises(InputError, match="unknown category"):
        parse_counted("bias,relu")


def test_header_lists_every_category_counted_or_not():
    line = convention_line(["bias"])
    assert "one per elementary op of: bias" in line
    # the rows stay conv/gemm MACs (breaker8 R8: the header said the MACs column included the counted ops)
    assert "multiply-accumulates in each row; the counted total adds" in line
    assert all(name in line.split("not counted as MACs:")[1] for name in CATEGORIES if name != "bias")


def test_cli_count(run_cli, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(deeplabv3lite(width=0.5, height=128, width_px=128).SerializeToString())
    code, out, _ = run_cli("analyze", str(path), "--count", "bn,resize")
    assert code == 0 and "one per elementary op of: bn, resize" in out and "MACs with bn, resize counted" in out
    code, out, _ = run_cli("analyze", str(path), "--count", "all", "--format", "json")
    document = json.loads(out)
    by_convention = document["macs_by_convention"]
    assert document["totals"]["macs"] == by_convention["conv_gemm_macs"]   # totals.macs keeps its meaning
    assert by_convention["macs"] == by_convention["conv_gemm_macs"] + sum(by_convention["subtotals"].values())
    assert by_convention["counted"] == list(CATEGORIES)
    code, _, err = run_cli("analyze", str(path), "--count", "relu")
    assert code == 2 and err.count("\n") == 1


def test_subtotals_match_hand_counts():
    from segcost.samples.builder import GraphBuilder

    builder = GraphBuilder(seed=0)
    y = builder.conv("input", 4, 4, 1, name="conv", bias=True)       # 4*8*8 = 256 bias adds
    y = builder.batch_norm(y, 4, "bn")                               # 2 per element: 512
    y = builder.node("Relu", [y], "relu")                            # 1 per element: 256
    y = builder.resize(y, 2, "up")                                   # bilinear 2D: 7 per output: 7*4*16*16
    result = analyze(load_model(builder.model("input", (1, 4, 8, 8), y, (1, 4, 16, 16))))
    subtotals = convention_totals(result, []).subtotals
    assert subtotals == {"bias": 256, "bn": 512, "activation": 256, "pooling": 0, "resize": 7 * 4 * 16 * 16,
                         "elementwise": 0, "reduction": 0}
    assert convention_totals(result, ["bias", "resize"]).macs == 4 * 4 * 8 * 8 + 256 + 7 * 4 * 16 * 16


def test_subtotals_from_signatures_equal_subtotals_from_the_layer_objects():
    """A LayerTable's convention subtotals come per distinct signature; the objects' layer by layer: equal."""
    result = analyze(load_model(deeplabv3lite(width=0.35, num_classes=3, height=64, width_px=64)))
    from_signatures = convention_totals(result, list(CATEGORIES))
    assert not result.layers.materialized
    result.layers = list(result.layers)
    from_objects = convention_totals(result, list(CATEGORIES))
    assert from_signatures == from_objects
    assert sum(1 for value in from_objects.subtotals.values() if value) >= 3
