"""--count per row: each layer's share of the counted total, summing to it exactly, in the table and Markdown."""

from __future__ import annotations

import re

import pytest

from segcost.analyzer import analyze
from segcost.analyzer.conventions import CATEGORIES, convention_totals, counted_macs
from segcost.frontends.onnx import load_model
from segcost.reports.analysis import render
from segcost.samples import deeplabv3lite
from segcost.samples.builder import GraphBuilder


def _chain():
    builder = GraphBuilder(seed=0)
    y = builder.conv("input", 4, 4, 1, name="conv", bias=True)       # 4*4*8*8 MACs, 256 bias adds
    y = builder.batch_norm(y, 4, "bn")                               # 2 per element: 512
    y = builder.node("Relu", [y], "relu")                            # 1 per element: 256
    y = builder.resize(y, 2, "up")                                   # bilinear 2D: 7 per output: 7*4*16*16
    return analyze(load_model(builder.model("input", (1, 4, 8, 8), y, (1, 4, 16, 16))))


def test_each_row_adds_its_counted_categories_to_its_macs():
    result = _chain()
    rows = dict(zip([layer.name for layer in result.layers], counted_macs(result.layers, ["bias", "resize"])))
    assert rows == {"conv": 4 * 4 * 8 * 8 + 256, "bn.bn": 0, "relu": 0, "up": 7 * 4 * 16 * 16}
    rows = dict(zip([layer.name for layer in result.layers], counted_macs(result.layers, ["bn", "activation"])))
    assert rows == {"conv": 4 * 4 * 8 * 8, "bn.bn": 512, "relu": 256, "up": 0}
    assert counted_macs(result.layers, []) == [layer.macs for layer in result.layers]


@pytest.mark.parametrize("counted", [[name] for name in CATEGORIES] + [list(CATEGORIES)])
def test_rows_sum_to_the_counted_total_from_the_table_and_the_objects(counted):
    result = analyze(load_model(deeplabv3lite(width=0.35, num_classes=3, height=64, width_px=64)))
    from_table = counted_macs(result.layers, counted)
    assert not result.layers.materialized
    assert sum(from_table) == convention_totals(result, counted).macs
    assert all(type(value) is int for value in from_table)
    assert counted_macs(list(result.layers), counted) == from_table


def _cells(line: str, markdown: bool) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split("|")] if markdown else re.split(r"\s{2,}", line.strip())


@pytest.mark.parametrize("fmt", ["table", "md"])
def test_the_table_has_a_counted_column_only_with_count(fmt):
    result = _chain()
    assert "counted MACs" not in render(result, fmt)
    result.counted = ["bias", "resize"]
    lines = render(result, fmt).splitlines()
    header = next(index for index, line in enumerate(lines) if "counted MACs" in line)
    names = _cells(lines[header], fmt == "md")
    rows = {}
    for line in lines[header + 2:]:
        if not line.strip():
            break
        cells = _cells(line, fmt == "md")
        if fmt == "table":   # empty kind and kernel cells of a table row are only spaces: put them back
            cells[3:3] = [""] * (len(names) - len(cells))
        rows[cells[1]] = dict(zip(names, cells))
    assert {name: row["counted MACs"] for name, row in rows.items()} == \
        {"conv": "1.28 K", "bn.bn": "0", "relu": "0", "up": "7.17 K"}   # 1,024 + 256 bias adds; 7,168
    assert rows["up"]["MACs"] == "0" and rows["conv"]["MACs"] == "1.02 K"
    assert "counted MACs" in render(result, fmt, top=1)
