"""The zoo table's bookkeeping: seed parsing, classes, deltas, reasons, cache (fast, no export)."""

from __future__ import annotations

import csv
import io

import pytest

from segcost.reports.zoo import render_zoo_table
from segcost.zoo import table as zoo_table
from segcost.zoo.registry import ZooModel
from segcost.zoo.table import MacCache, SeedRow, compute_table, seed_rows


def test_seed_rows_ship_with_the_package():
    rows = seed_rows()
    assert len(rows) == 35
    fcn = next(row for row in rows if row.model == "ResNet50+FCN")
    assert fcn.published_gmacs == 285.4 and fcn.height_width == (520, 1040)
    qat = next(row for row in rows if row.model.endswith("-QAT"))
    assert qat.architecture == "MobileNetV2S16+DeepLabV3Lite"
    assert next(row for row in rows if row.input_size == "520").height_width == (520, 520)


@pytest.fixture
def fake_zoo(monkeypatch):
    model = ZooModel("Fake+Lite", "edgeai-torchvision", build=lambda classes: None, input_size=(64, 64))
    monkeypatch.setattr("segcost.zoo.registry.all_models", lambda: {model.name: model})
    monkeypatch.setattr(zoo_table, "expected_deviations",
                        lambda: {("ADE20K32", "Fake+Lite", "64x32"): "the table rounds up"})
    return model


def _row(dataset: str, size: str, published: float | None, model: str = "Fake+Lite") -> SeedRow:
    return SeedRow("edgeai-torchvision", dataset, model, size, published, None, "")


def test_deltas_reasons_and_cache(fake_zoo, tmp_path):
    calls = []

    def counter(model, classes, height, width):
        calls.append((classes, height, width))
        return 1_000_000_000 * classes // 19  # 1.0 G for 19 classes

    rows = [_row("Cityscapes", "64x32", 1.005), _row("ADE20K32", "64x32", 1.0), _row("COCOSeg21", "64x32", 2.0),
            _row("Cityscapes", "64x32", None, model="Unknown+Net")]
    cache = MacCache(tmp_path)
    table = compute_table(rows, cache, counter=counter)
    assert calls == [(19, 32, 64), (32, 32, 64), (21, 32, 64)]
    assert [row.reason for row in table] == ["", "the table rounds up", "unexplained difference",
                                             "not defined in segcost's zoo yet"]
    assert table[0].delta_pct == pytest.approx(100 * (1.0 - 1.005) / 1.005)
    again = compute_table(rows, MacCache(tmp_path), counter=counter)
    assert len(calls) == 3  # all from the cache
    assert [row.computed_macs for row in again] == [row.computed_macs for row in table]
    records = list(csv.DictReader(io.StringIO(render_zoo_table(table, "csv"))))
    assert list(records[0]) == ["family", "dataset", "model", "input_size", "published_gmacs", "computed_gmacs",
                                "delta_pct", "reason"]
    assert records[0]["computed_gmacs"] == "1.0" and records[3]["computed_gmacs"] == ""


def test_damaged_cache_is_ignored(tmp_path):
    (tmp_path / "zoo-macs.json").write_text("{not json")
    assert MacCache(tmp_path).get("anything") is None
